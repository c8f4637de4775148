-- wrk script, workload "one token repeated": every request is GET /mcp with the same bearer
-- token (wrk sends one pre-built request over and over).
--   wrk … -s bench/wrk/one.lua URL -- TOKEN_FILE      (the first line of TOKEN_FILE is used)

function init(args)
  local f = assert(io.open(args[1], "r"))
  local token = f:read("*l")
  f:close()
  wrk.method = "GET"
  wrk.headers["Authorization"] = "Bearer " .. token
end

-- One line the bench scripts parse. wrk counts non-2xx/3xx answers in errors.status.
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
