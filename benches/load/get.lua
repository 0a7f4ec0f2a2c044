-- Plain keep-alive requests to the URL given on the command line.
done = require("report").done
