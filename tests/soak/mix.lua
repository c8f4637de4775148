-- wrk script for the soak: a mix of valid, forged, expired and missing tokens, with the
-- status each must get. Token lists come from files written by soak.mjs (one per line).

local lists = {}

local function load(path)
  local t = {}
  for line in io.lines(path) do
    if #line > 0 then t[#t + 1] = line end
  end
  return t
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local dir = args[1]
  lists.valid = load(dir .. "/valid.txt")
  lists.forged = load(dir .. "/forged.txt")
  lists.expired = load(dir .. "/expired.txt")
  sent_ok, sent_denied, got_ok, got_denied, got_other = 0, 0, 0, 0, 0
  body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
end

-- Zipf-like skew over the valid tokens: a few clients send most requests.
local function pick(t)
  local n = #t
  local i = math.floor(n ^ math.random()) -- 1..n, skewed to small i
  if i < 1 then i = 1 end
  if i > n then i = n end
  return t[i]
end

function request()
  local r = math.random()
  local headers = { ["content-type"] = "application/json" }
  if r < 0.70 then
    headers["authorization"] = "Bearer " .. pick(lists.valid)
    sent_ok = sent_ok + 1
  elseif r < 0.80 then
    headers["authorization"] = "Bearer " .. pick(lists.forged)
    sent_denied = sent_denied + 1
  elseif r < 0.90 then
    headers["authorization"] = "Bearer " .. pick(lists.expired)
    sent_denied = sent_denied + 1
  else
    sent_denied = sent_denied + 1
  end
  return wrk.format("POST", "/mcp", headers, body)
end

-- Responses are counted by status: every valid token must get 200, every other request 401,
-- and nothing else may come back. (wrk does not pair a response with its request, so the
-- check compares totals; a request still in flight at the end is the only slack.)
function response(status, headers, body)
  if status == 200 then
    got_ok = got_ok + 1
  elseif status == 401 then
    got_denied = got_denied + 1
  else
    got_other = got_other + 1
  end
end

function done(summary, latency, requests)
  local so, sd, go, gd, gx = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    so = so + t:get("sent_ok")
    sd = sd + t:get("sent_denied")
    go = go + t:get("got_ok")
    gd = gd + t:get("got_denied")
    gx = gx + t:get("got_other")
  end
  io.write(string.format('SOAK_RESULT {"sent_valid":%d,"sent_invalid_or_missing":%d,"got_200":%d,"got_401":%d,"got_other":%d,"requests":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    so, sd, go, gd, gx, summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
