## ---- Cloudflare Workers (owned by the Worker host) ------------------------------------
.PHONY: worker-build
worker-build: setup-rust
	@echo "worker build: not yet"
