-- wrk script, workload "token reuse as MCP clients do it": each request is GET /mcp with a
-- bearer token drawn from TOKEN_FILE (one per line; 1,000 distinct valid tokens, one per
-- client) with a Zipf skew (s = 1): token i is drawn with probability proportional to 1/i,
-- so a few busy clients send most requests and a long tail sends a few. wrk does not pair
-- responses with requests: wrong answers show as errors.status (non-2xx) in the result.
--   wrk … -s bench/wrk/zipf.lua URL -- TOKEN_FILE

local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  -- Cumulative distribution of Zipf(s = 1) over the tokens, for inverse-CDF sampling.
  cdf = {}
  local sum = 0
  for i = 1, #tokens do
    sum = sum + 1 / i
    cdf[i] = sum
  end
  for i = 1, #tokens do cdf[i] = cdf[i] / sum end
  -- A fixed seed per thread: every run draws the same sequence.
  math.randomseed(4242 + (thread_index or 0))
  headers = {}
end

local function pick()
  local u = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return tokens[lo]
end

function request()
  headers["Authorization"] = pick()
  return wrk.format("GET", "/mcp", headers)
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
