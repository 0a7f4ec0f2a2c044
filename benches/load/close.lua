-- Requests with Connection: close, as `wrk -H 'Connection: close'`: wrk
-- reconnects after every answer that closes the connection (one marked
-- Connection: close), so each request gets a new TCP connection if the
-- server honours it.
done = require("report").done

wrk.headers["Connection"] = "close"
