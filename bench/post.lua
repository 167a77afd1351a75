-- wrk script for the Gatehouse benchmark: JSON POSTs, results as one JSON line.
--
--   wrk -t1 -c64 -d20s -s bench/post.lua http://127.0.0.1:4000/v1/chat/completions -- BODY_FILE [API_KEY]
--
-- BODY_FILE holds the request body; API_KEY (optional, "-" for none) is sent as a bearer token.
-- `done` prints `BENCH_JSON {...}` with counts, errors and latency percentiles in microseconds.

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s post.lua URL -- BODY_FILE [API_KEY]")
  end
  local handle = assert(io.open(path, "rb"))
  wrk.body = handle:read("*a")
  handle:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "gatehouse-bench"
  local key = args[2]
  if key ~= nil and key ~= "" and key ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
