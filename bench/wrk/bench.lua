-- One wrk script for every scenario of bench/run.py. Arguments after "--":
--
--   get <threads> <connections> [token]    GET wrk's URL, "Authorization: Bearer <token>" if given
--   tokens <threads> <connections> <file>  POST {"refresh": "<token>"}: each line of <file> once,
--                                          never twice; thread i takes lines i, i+threads, ...
--   login <threads> <connections> <file>   POST {"username", "password"}, cycling the
--                                          "<user> <ip>" lines, with "X-Forwarded-For: <ip>"
--   proofs <threads> <connections> <file>  GET with "Authorization: DPoP <token>" (the file's
--                                          first line) and a DPoP proof (each later line once,
--                                          never twice, as tokens)
--
-- (wrk gives a script neither its thread nor its connection count: run.py passes both.)
--
-- Requests are formatted once in init(). A tokens thread stops itself while it still holds one
-- unsent token per connection (wrk may call request() once more per connection after stop()),
-- so a short list ends the run early instead of replaying a token. wrk itself still reports
-- the whole -d duration then, so each thread notes when it began and stopped (a monotonic
-- clock through LuaJIT's ffi) and done() reports "active_us". done() prints one line,
-- "BENCH {json}": counts, socket errors, non-2xx answers and latency percentiles in us.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
   return tonumber(timespec.tv_sec) * 1000000 + tonumber(timespec.tv_nsec) / 1000
end

local threads = {}
local made = 0

function setup(thread)
   thread:set("tid", made)
   made = made + 1
   table.insert(threads, thread)
end

local PASSWORD = "bench-password"
local requests_list = {}
local count = 0
local nextone = 0
local reserve = 0
local stopping = false
local walking = false

local function lines(path)
   local out = {}
   for line in io.lines(path) do
      if #line > 0 then
         table.insert(out, line)
      end
   end
   return out
end

function init(args)
   non2xx = 0
   overrun = 0
   local mode, nthreads, nconns = args[1], tonumber(args[2]), tonumber(args[3])
   local path = wrk.path
   if mode == "get" then
      local headers = {}
      if args[4] and #args[4] > 0 then
         headers["Authorization"] = "Bearer " .. args[4]
      end
      requests_list[1] = wrk.format("GET", path, headers)
   elseif mode == "tokens" then
      walking = true
      local headers = { ["Content-Type"] = "application/json" }
      for i, token in ipairs(lines(args[4])) do
         if (i - 1) % nthreads == tid then
            local body = '{"refresh": "' .. token .. '"}'
            table.insert(requests_list, wrk.format("POST", path, headers, body))
         end
      end
      -- wrk shares its connections evenly among its threads
      reserve = math.ceil(nconns / nthreads)
   elseif mode == "proofs" then
      walking = true
      local all = lines(args[4])
      local token = all[1]
      for i = 2, #all do
         if (i - 2) % nthreads == tid then
            local headers = { ["Authorization"] = "DPoP " .. token, ["DPoP"] = all[i] }
            table.insert(requests_list, wrk.format("GET", path, headers))
         end
      end
      reserve = math.ceil(nconns / nthreads)
   elseif mode == "login" then
      for i, line in ipairs(lines(args[4])) do
         if (i - 1) % nthreads == tid then
            local user, ip = line:match("^(%S+)%s+(%S+)$")
            local headers = { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip }
            local body = '{"username": "' .. user .. '", "password": "' .. PASSWORD .. '"}'
            table.insert(requests_list, wrk.format("POST", path, headers, body))
         end
      end
   else
      error("unknown mode " .. tostring(mode))
   end
   count = #requests_list
   stopped_us = 0
   began_us = now_us()
end

function request()
   if not walking then
      if count == 1 then
         return requests_list[1]
      end
      nextone = nextone % count + 1
      return requests_list[nextone]
   end
   nextone = nextone + 1
   if not stopping and count - nextone < reserve then
      stopping = true
      stopped_us = now_us()
      wrk.thread:stop()
   end
   if nextone > count then
      -- never expected (see the reserve above); a 404, counted as an error, not a replay
      overrun = overrun + 1
      return wrk.format("GET", "/bench-token-list-exhausted")
   end
   return requests_list[nextone]
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local bad, over, stopped, active = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non2xx") or 0)
      over = over + (thread:get("overrun") or 0)
      local at = thread:get("stopped_us") or 0
      if at > 0 then
         stopped = stopped + 1
         active = math.max(active, at - thread:get("began_us"))
      else
         active = summary.duration
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "active_us": %d, "stopped_threads": %d, '
         .. '"bytes": %d, "non2xx": %d, "overrun": %d, '
         .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, '
         .. '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "p999_us": %.1f, '
         .. '"mean_us": %.1f, "max_us": %.1f}\n',
      summary.requests, summary.duration, math.min(active, summary.duration), stopped,
      summary.bytes, bad, over,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max
   ))
end
