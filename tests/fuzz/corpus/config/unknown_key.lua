return { listen = "0.0.0.0:8080", lsiten = "x", [1] = true, log = { level = "verbose" } }
