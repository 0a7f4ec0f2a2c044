-- Shared wrk done() hook: prints one machine-readable line that run.sh
-- parses. Latencies are in microseconds.
--
-- Why not just latency:percentile(): wrk 4.1 corrects its histogram for
-- coordinated omission with an "expected interval" of runtime divided by
-- responses per connection, adding synthetic samples below every slow one.
-- With pipelining it records one latency per batch but counts every
-- response, so that interval is `depth` times too short: the histogram is
-- flooded with synthetic samples, some fall below the recorded minimum where
-- percentile() never looks, and it returns garbage (0 for p99 at times).
-- So this hook reads wrk's raw histogram (through LuaJIT's FFI), undoes
-- wrk's correction exactly, and redoes it with the interval per batch.
-- For unpipelined runs (depth 1) that reproduces wrk's own numbers.
--
-- Environment, set by run.sh: WRK_CONNECTIONS (the -c value) and
-- WRK_PIPELINE (requests per batch, default 1).
local ffi = require("ffi")

ffi.cdef [[
typedef struct { uint64_t count; uint64_t limit; uint64_t min; uint64_t max; } wrk_stats_head;
]]

local report = {}

-- The recorded histogram as ascending {value, count} pairs, or nil if the
-- stats object does not look like wrk 4.1's (then nothing is guessed).
local function raw_histogram(latency)
   local ok, head = pcall(function()
      return ffi.cast("wrk_stats_head **", latency)[0]
   end)
   if not ok then
      return nil
   end
   local min, max = tonumber(head.min), tonumber(head.max)
   if min ~= latency.min or max ~= latency.max or tonumber(head.limit) <= max then
      return nil
   end
   local data = ffi.cast("uint64_t *", head) + 4
   local bins = {}
   for v = min, max do
      local c = tonumber(data[v])
      if c > 0 then
         bins[#bins + 1] = { v, c }
      end
   end
   return bins
end

-- wrk's stats_correct() added, for every bin n >= 2e, its count to n-e,
-- n-2e, ... while above e. Walking down, each bin's own count is what is
-- left after removing what the bins k*e above it added.
local function undo_correction(bins, e)
   local above = {}
   for j = #bins, 1, -1 do
      local v = bins[j][1]
      if v > e then
         local r = v % e
         local own = bins[j][2] - (above[r] or 0)
         above[r] = (above[r] or 0) + own
         bins[j][2] = own
      end
   end
end

-- Percentiles of bins after wrk's correction with interval e, ranked as
-- wrk's stats_percentile() ranks them.
local function percentiles(bins, e, wanted)
   local hist, total = {}, 0
   local function add(v, c)
      hist[v] = (hist[v] or 0) + c
      total = total + c
   end
   for _, b in ipairs(bins) do
      local v, c = b[1], b[2]
      if c > 0 then
         add(v, c)
         if e > 0 and v >= 2 * e then
            local m = v - e
            while m > e do
               add(m, c)
               m = m - e
            end
         end
      end
   end
   local values = {}
   for v in pairs(hist) do
      values[#values + 1] = v
   end
   table.sort(values)
   local out = {}
   for i, p in ipairs(wanted) do
      local rank, seen = math.floor(p / 100 * total + 1.0), 0
      out[i] = 0
      for _, v in ipairs(values) do
         seen = seen + hist[v]
         if seen >= rank then
            out[i] = v
            break
         end
      end
   end
   return out
end

function report.done(summary, latency, requests)
   local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "")
   local depth = tonumber(os.getenv("WRK_PIPELINE") or "") or 1
   local p50, p99, samples = "NA", "NA", 0
   local bins = connections and raw_histogram(latency)
   local per_conn = connections and math.floor(summary.requests / connections) or 0
   local batches_per_conn = connections and math.floor(summary.requests / depth / connections) or 0
   if bins and per_conn > 0 and batches_per_conn > 0 then
      undo_correction(bins, math.floor(summary.duration / per_conn))
      for _, b in ipairs(bins) do
         samples = samples + b[2]
      end
      local p = percentiles(bins, math.floor(summary.duration / batches_per_conn), { 50, 99 })
      p50, p99 = p[1], p[2]
   elseif depth == 1 then
      p50, p99 = latency:percentile(50), latency:percentile(99)
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%s p99_us=%s samples=%d wrk_p50_us=%.0f wrk_p99_us=%.0f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, tostring(p50), tostring(p99), samples,
      latency:percentile(50), latency:percentile(99),
      e.status, e.connect, e.read, e.write, e.timeout))
end

return report
