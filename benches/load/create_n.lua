-- Sends exactly N POST /tasks (`-- N`), then only GET /tasks/0 (answered
-- 400, stores nothing) until run.sh sees task N exist and stops wrk with
-- SIGINT. Needs -t1: the count is per thread.
done = require("report").done

local target, sent, verified = 0, 0, false
local post, probe

function init(args)
   target = tonumber(args[1]) or 1000000
   post = wrk.format("POST", "/tasks", { ["Content-Type"] = "application/json" },
      '{"title":"t","description":"d"}')
   probe = wrk.format("GET", "/tasks/0")
end

function request()
   -- wrk 4.1 calls request() once right after init() to check the request
   -- (script_verify_request); that one is never sent, so it is not counted.
   if not verified then
      verified = true
      return post
   end
   sent = sent + 1
   if sent <= target then
      return post
   end
   return probe
end
