-- Pipelined requests, as TechEmpower's pipeline.lua: `-- 16` sends 16
-- requests for the URL in one write; wrk counts each response.
done = require("report").done

local batch

function init(args)
   local depth = tonumber(args[1]) or 1
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   batch = table.concat(r)
end

function request()
   return batch
end
