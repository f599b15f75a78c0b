-- wrk script for bench/soak.py: POST one log body over and over, count every non-200 answer.
-- The body file and the path come from the environment (SOAK_BODY, SOAK_PATH); wrk's own
-- socket errors (connect, read, write, timeout) are in its summary, printed by done() as JSON.

local threads = {}

local function read(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

local body = read(os.getenv("SOAK_BODY"))
local path = os.getenv("SOAK_PATH") or "/v1/classify"

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  statuses = {}
  request_data = wrk.format("POST", path, { ["Content-Type"] = "text/plain" }, body)
end

function request()
  return request_data
end

function response(status, headers, response_body)
  if status ~= 200 then
    non200 = non200 + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local non200_total, codes = 0, {}
  for _, thread in ipairs(threads) do
    non200_total = non200_total + thread:get("non200")
    for code, count in pairs(thread:get("statuses")) do
      codes[#codes + 1] = string.format('"%d": %d', code, count)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'SOAK {"requests": %d, "bytes": %d, "duration_us": %d, "non200": %d, "statuses": {%s}, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.bytes, summary.duration, non200_total, table.concat(codes, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
