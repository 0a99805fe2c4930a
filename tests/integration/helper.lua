-- helper.lua — harness for the integration specs: throwaway databases, gateways started from
-- the real binary (build/sluice) on a free port, an HTTP client, and concurrent requests via curl.
-- Environment: SLUICE_BIN, SLUICE_ROOT, SLUICE_TEST_DSN (superuser conninfo of a throwaway
-- PostgreSQL), TESTDB_DIR and TESTDB_PORT (for scripts/testdb.sh restart|down|up).
-- SLUICE_WRAPPER: a shell command prefix put before the binary in H.start (tests/valgrind.sh sets
-- a valgrind command line); "{log}" in it becomes <gateway dir>/wrapper.log. A wrapper exit code
-- of 99 means it found a problem: observing that exit (stop, exit_code, cleanup) is an error that
-- shows wrapper.log. SLUICE_TEST_TIMEOUT_SCALE multiplies the harness's own timeouts (start,
-- stop, and HTTP/curl limits a spec leaves at their default); 1, or 4 when a wrapper is set.
local ffi = require "ffi"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

ffi.cdef [[ int getpid(void); ]]

local H = {}

H.cjson = cjson
H.null = cjson.null

local here = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = os.getenv("PWD") or "."
  return cwd .. "/" .. p
end

H.root = os.getenv("SLUICE_ROOT") or abspath(here .. "../..")
H.bin = os.getenv("SLUICE_BIN") or (H.root .. "/build/sluice")
H.pid = ffi.C.getpid()
H.wrapper = os.getenv("SLUICE_WRAPPER")
if H.wrapper == "" then H.wrapper = nil end
H.WRAPPER_FAILED = 99
H.timeout_scale = tonumber(os.getenv("SLUICE_TEST_TIMEOUT_SCALE") or "") or (H.wrapper and 4 or 1)

-- A harness timeout (seconds) scaled for slow runs (SLUICE_TEST_TIMEOUT_SCALE).
function H.scaled(s) return s * H.timeout_scale end

math.randomseed(H.pid * 1000003 + math.floor((socket.gettime() % 100000) * 1000))

---------------------------------------------------------------------------------------------
-- shell

-- Quotes s for /bin/sh.
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function H.sleep(s) socket.sleep(s) end
function H.now() return socket.gettime() end

function H.readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.writefile(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
end

-- Runs cmd under /bin/sh; returns stdout, exit code, stderr.
function H.sh(cmd)
  local errf = os.tmpname()
  local p = assert(io.popen("( " .. cmd .. " ) 2>" .. H.q(errf) .. "; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local err = H.readfile(errf) or ""
  os.remove(errf)
  local rc = tonumber(out:match("__rc=(%d+)\n?$"))
  out = out:gsub("__rc=%d+\n?$", "")
  return out, rc, err
end

-- Runs cmd and errors (showing its output) unless it exits 0; returns stdout.
function H.must(cmd)
  local out, rc, err = H.sh(cmd)
  if rc ~= 0 then
    error(("command failed (exit %s): %s\n%s%s"):format(tostring(rc), cmd, out, err), 2)
  end
  return out
end

-- A fresh temporary directory.
function H.tmpdir(prefix)
  return (H.must("mktemp -d /tmp/" .. (prefix or "sluice-it") .. ".XXXXXX"):gsub("%s+$", ""))
end

---------------------------------------------------------------------------------------------
-- JSON (cjson cannot encode integers above 1e14 exactly, so requests use this encoder)

local array_mt = {}
-- Marks t as a JSON array (so an empty table encodes as []).
function H.array(t) return setmetatable(t or {}, array_mt) end

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local map = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return map[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then error("cannot encode " .. tostring(n)) end
  if n == math.floor(n) and math.abs(n) < 2 ^ 63 then return ("%.0f"):format(n) end
  for p = 15, 17 do
    local s = ("%." .. p .. "g"):format(n)
    if tonumber(s) == n then return s end
  end
end

function H.encode(v)
  local t = type(v)
  if v == cjson.null or v == nil then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then return encode_number(v)
  elseif t == "string" then return encode_string(v)
  elseif t == "table" then
    local parts = {}
    if is_array(v) then
      for i = 1, #v do parts[i] = H.encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      parts[#parts + 1] = encode_string(k) .. ":" .. H.encode(val)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. t)
end

-- Decodes s; returns the value, or nil and the error.
function H.decode(s)
  if type(s) ~= "string" then return nil, "no body" end
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil, v
end

-- Percent-encodes s for a URL query component.
function H.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- "a=1&b=x" from a table (sorted keys).
function H.query_string(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = H.urlencode(k) .. "=" .. H.urlencode(t[k]) end
  return table.concat(parts, "&")
end

-- Base64 of a byte string.
function H.base64(s)
  return (require "mime".b64(s))
end

---------------------------------------------------------------------------------------------
-- Lua literals (config files)

local function lua_literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return ("%q"):format(v)
  elseif t == "number" or t == "boolean" then return tostring(v)
  elseif t == "table" then
    local inner = indent .. "  "
    local parts = {}
    local n = #v
    for i = 1, n do parts[#parts + 1] = inner .. lua_literal(v[i], inner) end
    local keys = {}
    for k in pairs(v) do
      if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = inner .. "[" .. lua_literal(k) .. "] = " .. lua_literal(v[k], inner)
    end
    if #parts == 0 then return "{}" end
    return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
  end
  error("cannot write a " .. t .. " into a config file")
end
H.lua_literal = lua_literal

-- Writes `return <tbl>` to path.
function H.write_config(path, tbl)
  H.writefile(path, "return " .. lua_literal(tbl) .. "\n")
end

---------------------------------------------------------------------------------------------
-- databases

function H.admin_dsn()
  local dsn = os.getenv("SLUICE_TEST_DSN")
  if not dsn or dsn == "" then error("SLUICE_TEST_DSN is not set (a superuser conninfo of a throwaway PostgreSQL)") end
  return dsn
end

-- dsn with its database replaced by dbname (key=value conninfo or postgres:// URL).
function H.dsn_with_db(dsn, dbname)
  if dsn:match("^postgres") then
    local base, query = dsn:match("^([^?]*)(.*)$")
    local prefix = base:match("^(postgres[a-z]*://[^/]*)") or base
    return prefix .. "/" .. dbname .. query
  end
  local out, n = dsn:gsub("dbname%s*=%s*'[^']*'", "dbname=" .. dbname)
  if n == 0 then out, n = dsn:gsub("dbname%s*=%s*%S+", "dbname=" .. dbname) end
  if n == 0 then out = dsn .. " dbname=" .. dbname end
  return out
end

-- The database name in dsn.
function H.dsn_dbname(dsn)
  if dsn:match("^postgres") then return dsn:match("^postgres[a-z]*://[^/]*/([^?]+)") end
  return dsn:match("dbname%s*=%s*'([^']*)'") or dsn:match("dbname%s*=%s*(%S+)")
end

-- Runs sql (any number of statements) through psql against dsn; returns stdout (unaligned,
-- tuples only, "|" separated); errors with psql's message on any failure.
function H.psql(dsn, sql)
  local f = os.tmpname()
  H.writefile(f, sql)
  local out, rc, err = H.sh("psql -X -q -A -t -v ON_ERROR_STOP=1 -d " .. H.q(dsn) .. " -f " .. H.q(f))
  os.remove(f)
  if rc ~= 0 then error("psql failed (exit " .. tostring(rc) .. "): " .. err .. "\nSQL: " .. sql, 2) end
  return out
end

-- Like H.psql, trailing newline removed.
function H.psql1(dsn, sql)
  return (H.psql(dsn, sql):gsub("\n$", ""))
end

-- Creates database prefix_<pid>_<random>; returns its DSN.
function H.createdb(prefix)
  local name = ("%s_%d_%d"):format(prefix or "it", H.pid, math.random(100000, 999999)):lower()
  H.psql(H.admin_dsn(), ('CREATE DATABASE "%s";'):format(name))
  return H.dsn_with_db(H.admin_dsn(), name)
end

-- Drops the database of dsn (closing whatever is still connected to it).
function H.dropdb(dsn)
  local name = H.dsn_dbname(dsn)
  assert(name and name ~= "postgres", "refusing to drop " .. tostring(name))
  H.psql(H.admin_dsn(), ('DROP DATABASE IF EXISTS "%s" WITH (FORCE);'):format(name))
end

-- The shell command that runs `scripts/testdb.sh <action>` (restart, down, up) on the test
-- database (TESTDB_DIR / TESTDB_PORT come from the environment).
function H.testdb_cmd(action)
  return H.q(H.root .. "/scripts/testdb.sh") .. " " .. action
end

---------------------------------------------------------------------------------------------
-- HTTP

-- True when a request goes out as application/json unless the caller names another type: one
-- with a body, and any method but GET and HEAD (the gateway refuses those without a Content-Type,
-- body or not).
local function json_by_default(method, body)
  return body ~= nil or (method ~= "GET" and method ~= "HEAD")
end

-- One request with luasocket. body: nil, a string, or a table (JSON-encoded); a body, and any
-- method but GET and HEAD, is sent as application/json unless headers name another Content-Type
-- (false: none). Returns status, body, headers (lower-case names); on a transport failure
-- (refused, reset, timeout) returns nil, error.
function H.http(method, url, body, headers, timeout)
  local hdrs = {}
  for k, v in pairs(headers or {}) do hdrs[k:lower()] = v end
  if type(body) == "table" then body = H.encode(body) end
  -- JSON unless the caller says otherwise (false: send no Content-Type)
  if json_by_default(method, body) and hdrs["content-type"] == nil then hdrs["content-type"] = "application/json" end
  if hdrs["content-type"] == false then hdrs["content-type"] = nil end
  local source
  if body ~= nil then
    hdrs["content-length"] = tostring(#body)
    source = ltn12.source.string(body)
  end
  local chunks = {}
  http.TIMEOUT = timeout or H.scaled(20)
  local ok, status, rhdrs = http.request {
    url = url, method = method, headers = hdrs, source = source, sink = ltn12.sink.table(chunks),
  }
  if not ok then return nil, tostring(status) end
  return status, table.concat(chunks), rhdrs or {}
end

-- One HTTP/1.1 request sent byte for byte as given (target is not re-encoded, unlike
-- socket.http), on its own connection, read until the server closes it. Returns status, the
-- header lines as a list of { name (lower-case), value }, the body, and the raw head; nil, error
-- on a transport failure.
function H.raw_request(port, method, target, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or H.scaled(20))
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  -- a request other than GET/HEAD carries a JSON content type, as H.request's do
  local ctype = (method == "GET" or method == "HEAD") and "" or "Content-Type: application/json\r\n"
  c:send(method .. " " .. target .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" .. ctype .. "\r\n")
  local data, e, partial = c:receive("*a")
  c:close()
  data = data or partial
  if not data or data == "" then return nil, e end
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no end of head in: " .. data:sub(1, 200) end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local lines = {}
  for line in head:gmatch("\r\n([^\r\n]*)") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    lines[#lines + 1] = { (k or line):lower(), v }
  end
  return status, lines, body, head
end

---------------------------------------------------------------------------------------------
-- free ports

-- A port nobody listens on, in [lo, hi] (default 20000..40000; tests that must stay clear of
-- the kernel's ephemeral ports ask for one above them).
function H.free_port(lo, hi)
  for _ = 1, 200 do
    local port = math.random(lo or 20000, hi or 40000)
    local s = socket.tcp()
    s:setoption("reuseaddr", false)
    local ok = s:bind("127.0.0.1", port)
    s:close()
    if ok then return port end
  end
  error("no free port found")
end

-- Calls fn every interval seconds (default 0.05) until it returns a true value or timeout seconds
-- passed. Returns that value (nil on timeout) and the seconds it took.
function H.wait_for(fn, timeout, interval)
  local t0 = H.now()
  repeat
    local v = fn()
    if v then return v, H.now() - t0 end
    H.sleep(interval or 0.05)
  until H.now() - t0 > timeout
  return nil, H.now() - t0
end

---------------------------------------------------------------------------------------------
-- gateways

local Gateway = {}
Gateway.__index = Gateway

local live = {} -- gateways not yet stopped, stopped by H.cleanup
local all_dirs = {} -- temp dirs of every gateway, removed by H.cleanup

-- Variables that would override the config file (docs/configuration.md); cleared for the child.
local override_env = {
  "DATABASE_URL", "SLUICE_LISTEN", "SLUICE_WORKERS", "SLUICE_ADMIN_TOKEN", "SLUICE_POOL_SIZE",
  "SLUICE_MAX_OVERFLOW", "SLUICE_POOL_TIMEOUT", "SLUICE_POOL_RECYCLE", "SLUICE_ECHO",
  "SLUICE_PREPARED_STATEMENT_CACHE_SIZE", "SLUICE_STATEMENT_TIMEOUT_MS", "SLUICE_LOG_LEVEL",
  "SLUICE_LOG_FORMAT", "SLUICE_MAX_BODY_BYTES", "SLUICE_REQUEST_TIMEOUT", "SLUICE_SHUTDOWN_TIMEOUT",
  "SLUICE_TOKENS", "SLUICE_JWT_SECRET", "SLUICE_JWT_AUDIENCE", "SLUICE_JWT_ISSUER", "SLUICE_JWT_MAX_AGE",
  "SLUICE_MAX_RESPONSE_BYTES", "SLUICE_FAILOVER_WAIT_MS", "SLUICE_SHUTDOWN_GRACE", "SLUICE_READ_YOUR_WRITES_WAIT_MS",
}

local function merge(dst, src)
  for k, v in pairs(src or {}) do dst[k] = v end
  return dst
end

-- Starts `sluice serve` and waits until /health/live answers 200 (10 s at most; otherwise
-- errors with the log). opts: dsn, scripts = { name = source }, config = { top-level keys },
-- pool = { keys of pools.primary }, env = { NAME = value }, wait = false to not wait.
-- shutdown_grace is 0 unless config sets it, so that :stop() ends the gateway at once.
-- Returns a gateway object; stop it with :stop() (H.cleanup stops any left running).
function H.start(opts)
  opts = opts or {}
  local dir = H.tmpdir("sluice-it")
  local sdir = dir .. "/scripts"
  H.must("mkdir -p " .. H.q(sdir))
  for name, src in pairs(opts.scripts or {}) do H.writefile(sdir .. "/" .. name, src) end
  local port = opts.port or H.free_port()
  local cfg = {
    listen = "127.0.0.1:" .. port,
    workers = 2,
    shutdown_grace = 0,
    pools = { primary = merge({ url = opts.dsn }, opts.pool) },
    scripts = { sdir .. "/*.lua" },
  }
  merge(cfg, opts.config)
  local cfgpath = dir .. "/config.lua"
  H.write_config(cfgpath, cfg)

  local envs = {}
  for _, k in ipairs(override_env) do envs[#envs + 1] = "-u " .. k end
  for k, v in pairs(opts.env or {}) do envs[#envs + 1] = H.q(k .. "=" .. v) end
  local wrap = ""
  if H.wrapper then
    wrap = H.wrapper:gsub("{log}", function() return H.q(dir .. "/wrapper.log") end) .. " "
  end
  local cmd = "env " .. table.concat(envs, " ") .. " " .. wrap .. H.q(H.bin) .. " serve --config " .. H.q(cfgpath)
  -- The subshell records the exit code; the watcher stops the gateway if this test process dies.
  local launcher = ([[
(
  cd %s
  %s >%s 2>&1 &
  pid=$!
  echo $pid >%s.tmp && mv %s.tmp %s
  ( while kill -0 %d 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done
    if kill -0 $pid 2>/dev/null; then kill -TERM $pid; sleep 5; kill -0 $pid 2>/dev/null && kill -KILL $pid; fi
  ) >/dev/null 2>&1 </dev/null &
  wait $pid
  echo $? >%s.tmp && mv %s.tmp %s
) >/dev/null 2>&1 </dev/null &
]]):format(H.q(opts.cwd or H.root), cmd, H.q(dir .. "/sluice.log"),
    H.q(dir .. "/pid"), H.q(dir .. "/pid"), H.q(dir .. "/pid"), H.pid,
    H.q(dir .. "/rc"), H.q(dir .. "/rc"), H.q(dir .. "/rc"))
  H.must(launcher)

  local gw = setmetatable({ dir = dir, port = port, config_path = cfgpath, config = cfg,
    base = "http://127.0.0.1:" .. port }, Gateway)
  local deadline = H.now() + H.scaled(5)
  while not gw.pid and H.now() < deadline do
    gw.pid = tonumber(H.readfile(dir .. "/pid") or "")
    if not gw.pid then H.sleep(0.01) end
  end
  assert(gw.pid, "the gateway did not start (no pid)")
  live[gw] = true
  all_dirs[#all_dirs + 1] = dir
  if opts.wait ~= false then gw:wait_live(opts.timeout or 10) end
  return gw
end

-- The exit code when the process has exited, else nil. Under SLUICE_WRAPPER, the first look at
-- an exit with code 99 errors with the wrapper's report.
function Gateway:exit_code()
  if self.rc then return self.rc end
  local rc = tonumber(H.readfile(self.dir .. "/rc") or "")
  if rc then
    self.rc = rc
    live[self] = nil
    if H.wrapper and rc == H.WRAPPER_FAILED then
      self.wrapper_failed = true
      error(("the gateway's wrapper found problems (exit %d): %s\n%s\ngateway log tail:\n%s")
        :format(rc, H.wrapper, H.readfile(self.dir .. "/wrapper.log") or "(no wrapper.log)",
          self:log():sub(-2000)), 2)
    end
  end
  return rc
end

function Gateway:alive()
  if self:exit_code() then return false end
  local _, rc = H.sh("kill -0 " .. self.pid)
  return rc == 0
end

function Gateway:log()
  return H.readfile(self.dir .. "/sluice.log") or ""
end

-- Waits until GET /health/live answers 200; errors (with the log) after timeout seconds or
-- when the process exits.
function Gateway:wait_live(timeout)
  local deadline = H.now() + H.scaled(timeout or 10)
  local last
  while H.now() < deadline do
    local rc = self:exit_code()
    if rc then
      error(("gateway exited with code %d before serving; log:\n%s"):format(rc, self:log()), 2)
    end
    local status, body = H.http("GET", self.base .. "/health/live", nil, nil, 1)
    if status == 200 then return end
    last = tostring(status) .. " " .. tostring(body)
    H.sleep(0.05)
  end
  local log = self:log()
  self:stop()
  error(("gateway not live after %ss (last: %s); log:\n%s"):format(H.scaled(timeout or 10), last, log), 2)
end

-- Sends SIGTERM (or sig) and waits up to timeout (10) seconds; returns the exit code, or errors
-- after killing it with SIGKILL.
function Gateway:stop(timeout, sig)
  if self:exit_code() then return self.rc end
  H.sh("kill -" .. (sig or "TERM") .. " " .. self.pid)
  local deadline = H.now() + H.scaled(timeout or 10)
  while H.now() < deadline do
    if self:exit_code() then return self.rc end
    H.sleep(0.02)
  end
  H.sh("kill -KILL " .. self.pid)
  local d2 = H.now() + 5
  while H.now() < d2 and not self:exit_code() do H.sleep(0.02) end
  live[self] = nil
  error(("gateway did not exit within %ss of SIG%s; log:\n%s"):format(H.scaled(timeout or 10), sig or "TERM", self:log()), 2)
end

function Gateway:url(path) return self.base .. path end

-- status, body, headers (lower-case); nil, error on transport failure.
function Gateway:request(method, path, body, headers, timeout)
  return H.http(method, self.base .. path, body, headers, timeout)
end
function Gateway:get(path, headers, timeout) return self:request("GET", path, nil, headers, timeout) end
function Gateway:post(path, body, headers, timeout)
  if body == nil then body = "" end
  return self:request("POST", path, body, headers, timeout)
end

-- Like request, with the body decoded: status, value (nil if not JSON), headers, raw body.
function Gateway:json(method, path, body, headers, timeout)
  local status, raw, hdrs = self:request(method, path, body, headers, timeout)
  if not status then return nil, nil, nil, raw end
  return status, (H.decode(raw)), hdrs, raw
end
function Gateway:get_json(path, headers, timeout) return self:json("GET", path, nil, headers, timeout) end
function Gateway:post_json(path, body, headers, timeout)
  if body == nil then body = "" end
  return self:json("POST", path, body, headers, timeout)
end

---------------------------------------------------------------------------------------------
-- concurrent requests with curl --parallel

local Batch = {}
Batch.__index = Batch

local function curl_str(s) return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"' end

-- Starts reqs concurrently in the background: reqs[i] = { method=, path=, body= (string or
-- table), headers= {} }. opts.max (default #reqs) connections at once, opts.timeout (20 s) per
-- request. Returns a batch; batch:wait() returns results[i] = { status = n or nil (transport
-- failure), body = raw, json = decoded or nil, headers = {}, time = seconds }.
function Gateway:start_parallel(reqs, opts)
  opts = opts or {}
  local dir = H.tmpdir("sluice-par")
  local lines = {}
  for i, r in ipairs(reqs) do
    local hdrs = {}
    for k, v in pairs(r.headers or {}) do hdrs[k:lower()] = v end
    local body = r.body
    if type(body) == "table" then body = H.encode(body) end
    local method = r.method or (body and "POST" or "GET")
    if json_by_default(method, body) and hdrs["content-type"] == nil then hdrs["content-type"] = "application/json" end
    if method == "POST" and body == nil then body = "" end
    lines[#lines + 1] = "url = " .. curl_str(self.base .. r.path)
    lines[#lines + 1] = "request = " .. curl_str(method)
    lines[#lines + 1] = 'header = "Expect:"'
    for k, v in pairs(hdrs) do
      if v ~= false then lines[#lines + 1] = "header = " .. curl_str(k .. ": " .. v) end
    end
    if body then
      H.writefile(dir .. "/b" .. i, body)
      lines[#lines + 1] = "data-binary = " .. curl_str("@" .. dir .. "/b" .. i)
    end
    lines[#lines + 1] = "output = " .. curl_str(dir .. "/o" .. i)
    lines[#lines + 1] = "dump-header = " .. curl_str(dir .. "/h" .. i)
    lines[#lines + 1] = "write-out = " .. curl_str("%{http_code} %{time_total} " .. i .. "\\n")
    lines[#lines + 1] = "max-time = " .. (opts.timeout or H.scaled(20))
    lines[#lines + 1] = "silent"
    if i < #reqs then lines[#lines + 1] = "next" end
  end
  H.writefile(dir .. "/curl.cfg", table.concat(lines, "\n") .. "\n")
  local max = opts.max or #reqs
  H.must(("( curl --parallel --parallel-immediate --parallel-max %d -K %s >%s 2>%s; echo $? >%s ) >/dev/null 2>&1 </dev/null &")
    :format(max, H.q(dir .. "/curl.cfg"), H.q(dir .. "/out"), H.q(dir .. "/err"), H.q(dir .. "/done")))
  return setmetatable({ dir = dir, n = #reqs, timeout = opts.timeout or H.scaled(20), started = H.now() }, Batch)
end

local function parse_headers(raw)
  local h = {}
  if not raw then return h end
  -- keep the last response's block (a 100 Continue may precede it)
  local last = raw
  for block in raw:gmatch("(HTTP/[^\r\n]*\r?\n.-\r?\n\r?\n)") do last = block end
  for name, value in last:gmatch("([%w%-]+):%s*([^\r\n]*)") do h[name:lower()] = value end
  return h
end

-- Waits for every request (bounded by the per-request timeout plus 10 s); returns the results.
function Batch:wait()
  local deadline = self.started + self.timeout + 10
  while not H.readfile(self.dir .. "/done") do
    if H.now() > deadline then error("curl batch did not finish in time: " .. self.dir) end
    H.sleep(0.02)
  end
  local results = {}
  for i = 1, self.n do results[i] = { status = nil, body = "", headers = {} } end
  local out = H.readfile(self.dir .. "/out") or ""
  for code, t, i in out:gmatch("(%d+) ([%d%.]+) (%d+)\n") do
    local r = results[tonumber(i)]
    code = tonumber(code)
    r.status = code ~= 0 and code or nil
    r.time = tonumber(t)
  end
  for i = 1, self.n do
    local r = results[i]
    r.body = H.readfile(self.dir .. "/o" .. i) or ""
    r.headers = parse_headers(H.readfile(self.dir .. "/h" .. i))
    r.json = H.decode(r.body)
  end
  H.sh("rm -rf " .. H.q(self.dir))
  return results
end

-- Runs reqs concurrently and returns their results (see start_parallel).
function Gateway:parallel(reqs, opts)
  return self:start_parallel(reqs, opts):wait()
end

-- One request in the background (curl); :wait() returns its result table (see start_parallel).
function Gateway:async(method, path, body, headers, timeout)
  local b = self:start_parallel({ { method = method, path = path, body = body, headers = headers } },
    { timeout = timeout })
  return { wait = function() return b:wait()[1] end }
end

---------------------------------------------------------------------------------------------
-- assertions

-- Asserts a JSON error response: status, Content-Type application/json, body
-- {"error":{"code":code,"message":<string>}}; returns the decoded error object.
function H.assert_error(want_status, want_code, status, body, headers, raw)
  local where = ("(got %s %s)"):format(tostring(status), tostring(raw))
  assert(status == want_status, ("expected status %d %s"):format(want_status, where))
  local ct = headers and headers["content-type"] or ""
  assert(ct:match("^application/json"), "expected Content-Type application/json, got " .. tostring(ct) .. " " .. where)
  assert(type(body) == "table" and type(body.error) == "table", "expected an {\"error\":{..}} body " .. where)
  assert(body.error.code == want_code, ("expected error.code %q %s"):format(want_code, where))
  assert(type(body.error.message) == "string" and #body.error.message > 0, "expected error.message " .. where)
  return body.error
end

-- Asserts 200 + application/json; returns the decoded body.
function H.assert_ok(status, body, headers, raw)
  local where = ("(got %s %s)"):format(tostring(status), tostring(raw))
  assert(status == 200, "expected status 200 " .. where)
  local ct = headers and headers["content-type"] or ""
  assert(ct:match("^application/json"), "expected Content-Type application/json, got " .. tostring(ct) .. " " .. where)
  assert(body ~= nil, "expected a JSON body " .. where)
  return body
end

---------------------------------------------------------------------------------------------
-- the HA test cluster (scripts/hacluster.sh) and load in the background (haload.lua)

-- Runs `scripts/hacluster.sh <args>` (args: shell words, quoted by the caller) with
-- HACLUSTER_OWNER set to this process, so that a cluster this test started stops itself if the
-- test dies without its teardown. Returns stdout; errors with the output unless it exits 0.
function H.hacluster(args)
  return H.must(("HACLUSTER_OWNER=%d %s %s"):format(H.pid, H.q(H.root .. "/scripts/hacluster.sh"), args))
end

-- The variables `scripts/hacluster.sh env` exports (HA_PRIMARY_URL, HA_PG_PORT1, HA_TTL, ...).
function H.hacluster_env()
  local out = H.must(("bash -c %s"):format(H.q('eval "$(' .. H.q(H.root .. "/scripts/hacluster.sh")
    .. ' env)" && env')))
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^(HA[%w_]*)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

-- Prints a figure as a TAP comment ("# what: value"), where the run's output keeps it.
function H.figure(fmt, ...)
  print("# " .. fmt:format(...))
  io.stdout:flush()
end

local Load = {}
Load.__index = Load

-- Starts tests/integration/haload.lua in the background: kind "write" POSTs {"id": n, "run":
-- opts.run} to url with n = 1, 2, 3, ...; kind "read" GETs url. One request at a time, until
-- :stop() or opts.max_secs (60). Returns a load; :results() after :stop() gives one table per
-- request: { n, t0, t1 (send and answer times, H.now() clock), status (nil: no HTTP answer),
-- code, outcome (of a JSON error), err (its message, or the transport error) }.
function H.start_load(kind, url, opts)
  opts = opts or {}
  local dir = H.tmpdir("sluice-haload")
  H.must(("( luajit %s %s %s %s %s %d %d %d %s >%s 2>&1; echo $? >%s ) </dev/null >/dev/null 2>&1 &"):format(
    H.q(H.root .. "/tests/integration/haload.lua"), kind, H.q(url), H.q(dir), H.q(opts.run or "-"),
    opts.max_secs or 60, opts.pause_ms or 2, H.pid, H.q(opts.timeout or 40), H.q(dir .. "/log"), H.q(dir .. "/rc")))
  all_dirs[#all_dirs + 1] = dir
  return setmetatable({ dir = dir, kind = kind, started = H.now(), timeout = opts.timeout or 40 }, Load)
end

-- Tells the load to stop and waits until it did (its request in progress may take up to its
-- timeout).
function Load:stop()
  H.writefile(self.dir .. "/stop", "")
  local deadline = H.now() + self.timeout + 5
  while not H.readfile(self.dir .. "/rc") do
    if H.now() > deadline then error("the load did not stop: " .. self.dir) end
    H.sleep(0.05)
  end
  local rc = tonumber(H.readfile(self.dir .. "/rc"))
  if rc ~= 0 then error("the load failed (exit " .. tostring(rc) .. "): " .. (H.readfile(self.dir .. "/log") or "")) end
end

-- The requests so far (see H.start_load).
function Load:results()
  local res = {}
  for line in (H.readfile(self.dir .. "/out") or ""):gmatch("[^\n]+") do
    local n, t0, t1, status, code, outcome, err = line:match("^(%d+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(.*)$")
    if n then
      status = tonumber(status)
      res[#res + 1] = { n = tonumber(n), t0 = tonumber(t0), t1 = tonumber(t1), status = status ~= 0 and status or nil,
        code = code ~= "-" and code or nil, outcome = outcome ~= "-" and outcome or nil,
        err = err ~= "" and err or nil }
    end
  end
  return res
end

---------------------------------------------------------------------------------------------
-- cleanup

-- Stops every gateway still running (errors are swallowed: it runs in teardown), then errors
-- if a SLUICE_WRAPPER found problems in one of them. Removes their temp dirs unless
-- SLUICE_TEST_KEEP is set.
function H.cleanup()
  local failed = {}
  for gw in pairs(live) do
    local ok, err = pcall(gw.stop, gw)
    if not ok and gw.wrapper_failed then failed[#failed + 1] = tostring(err) end
  end
  if (os.getenv("SLUICE_TEST_KEEP") or "") == "" then
    for _, d in ipairs(all_dirs) do H.sh("rm -rf " .. H.q(d)) end
  end
  all_dirs = {}
  if #failed > 0 then error(table.concat(failed, "\n"), 2) end
end

return H
