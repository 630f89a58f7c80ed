-- wrk script for benchmarks/http_load.sh: each request asks the search API another question,
-- some with a filter or a later page; the run ends with one line of figures.
local queries = {
  "read a file line by line", "sort a list of dictionaries by key", "parse json from a string",
  "current date and time", "run a subprocess and capture output", "regular expression groups",
  "http request with timeout", "temporary directory", "compare floating point numbers",
  "split a path into directory and file name", "thread pool executor", "asyncio event loop",
  "decode bytes to text", "command line arguments", "random sample without replacement",
  "csv writer quoting", "compress data with gzip", "hash a password", "unit test assertions",
  "format a number with commas", "iterate over pairs", "default dictionary", "deep copy",
  "context manager", "environment variables", "socket connect", "sqlite cursor execute",
  "logging handler to file", "zip archive extract", "url quote and unquote",
  "abstract base class", "dataclass field default", "queryset filter", "template context",
  "middleware request response", "for loop else clause", "exception chaining",
  "generator send", "decorator with arguments", "string formatting mini language",
}
local extras = { "", "", "", "&kind=function", "&kind=method", "&page=2", "&per_page=20" }

local function encode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local counter = 0
request = function()
  counter = counter + 1
  local q = queries[(counter % #queries) + 1]
  local extra = extras[(counter % #extras) + 1]
  return wrk.format("GET", "/search/api/?q=" .. encode(q) .. extra)
end

done = function(summary, latency, requests)
  -- wrk counts non-2xx/3xx responses itself (summary.errors.status); no response() hook,
  -- which would make wrk parse every body.
  local non2xx = summary.errors.status
  io.write(string.format(
    "requests %d in %.1fs: %.1f req/s; p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; " ..
    "non-2xx %d; socket errors: connect %d, read %d, write %d, timeout %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, non2xx,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
