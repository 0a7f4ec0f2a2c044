-- POST /tasks with a small valid body on every request.
done = require("report").done

wrk.method = "POST"
wrk.path = "/tasks"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"t","description":"d"}'
