-- tls_spec.lua — TLS on the listener (tls = { cert, key }) through the real binary, with a CA made
-- by openssl in the test: curl trusting that CA gets JSON over HTTP/1.1, and over HTTP/2 when
-- http2 = true; plain HTTP to the TLS port is closed, TLS 1.0 and 1.1 are refused, TLS 1.2 offers
-- only ECDHE with AEAD ciphers, sessions resume without tickets, a silent client is closed after
-- client_timeout, SIGHUP reads a renewed certificate, and bad cert/key settings stop start-up
-- with one line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local scripts = {
  ["tls.lua"] = [==[
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
]==],
}

-- A CA named cn, and a certificate for localhost / 127.0.0.1 signed by it, in dir.
local function make_ca(dir, cn)
  local d = H.q(dir)
  H.must(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=%s"
    .. " && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost"
    .. " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >ext"
    .. " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext")
    :format(d, cn))
  return { ca = dir .. "/ca.crt", cert = dir .. "/server.crt", key = dir .. "/server.key" }
end

-- curl against the gateway: exit code, HTTP status, HTTP version, body.
local function curl(gw, path, args)
  local out, rc = H.sh(("curl -sS --max-time 10 %s -w '\\n%%{http_code} %%{http_version}' %s"):format(
    args or "", H.q("https://localhost:" .. gw.port .. path)))
  local body, status, version = out:match("^(.*)\n(%d+) (%S+)$")
  return rc, tonumber(status), version, body
end

-- Waits until the TLS listener answers /health/live.
local function wait_tls(gw, ca)
  local deadline = H.now() + 10
  while H.now() < deadline do
    local rc, status = curl(gw, "/health/live", "--cacert " .. H.q(ca))
    if rc == 0 and status == 200 then return end
    assert(gw:alive(), "the gateway exited:\n" .. gw:log())
    H.sleep(0.05)
  end
  error("the TLS listener did not answer; log:\n" .. gw:log())
end

-- What `openssl s_client` negotiates with flags: the protocol and the cipher, or nil when the
-- handshake fails; then s_client's whole output.
local function negotiated(gw, flags)
  local out = H.sh(("openssl s_client -connect 127.0.0.1:%d %s </dev/null 2>&1"):format(gw.port, flags))
  local protocol, cipher = out:match("[NR]e[wu]s?e?d?, ([^,]+), Cipher is (%S+)")
  if cipher == nil or cipher == "(NONE)" then return nil, nil, out end
  return protocol, cipher, out
end

describe("TLS on the listener", function()
  local db, dir, ca1, ca2, gw

  setup(function()
    db = H.createdb("tls")
    dir = H.tmpdir("sluice-tls")
    H.must("mkdir -p " .. H.q(dir .. "/a") .. " " .. H.q(dir .. "/b"))
    ca1 = make_ca(dir .. "/a", "sluice-test-ca-1")
    ca2 = make_ca(dir .. "/b", "sluice-test-ca-2")
    -- The gateway reads the certificate from these paths, so SIGHUP can find a renewed one there.
    H.must(("cp %s %s/live.crt && cp %s %s/live.key"):format(H.q(ca1.cert), H.q(dir), H.q(ca1.key), H.q(dir)))
    gw = H.start { dsn = db, scripts = scripts, wait = false, config = {
      workers = 2, client_timeout = 2, tls = { cert = dir .. "/live.crt", key = dir .. "/live.key" },
    } }
    wait_tls(gw, ca1.ca)
  end)

  teardown(function()
    H.cleanup()
    if db then H.dropdb(db) end
    if dir then H.sh("rm -rf " .. H.q(dir)) end
  end)

  it("curl trusting the CA gets the query's JSON over HTTP/1.1", function()
    local rc, status, version, body = curl(gw, "/query/one", "--http1.1 --cacert " .. H.q(ca1.ca))
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal("1.1", version)
    assert.same({ one = 1 }, H.decode(body))
  end)

  it("HTTP/2 is offered by ALPN only with http2 = true", function()
    local rc, status, version = curl(gw, "/query/one", "--http2 --cacert " .. H.q(ca1.ca))
    assert.equal(0, rc)
    assert.equal(200, status)
    assert.equal("1.1", version) -- off by default
    local g2 = H.start { dsn = db, scripts = scripts, wait = false, config = {
      workers = 1, http2 = true, tls = { cert = ca1.cert, key = ca1.key } } }
    wait_tls(g2, ca1.ca)
    local rc2, status2, version2, body2 = curl(g2, "/query/one", "--http2 --cacert " .. H.q(ca1.ca))
    g2:stop()
    assert.equal(0, rc2)
    assert.equal(200, status2)
    assert.equal("2", version2)
    assert.same({ one = 1 }, H.decode(body2))
  end)

  it("errors keep their JSON body over TLS", function()
    local rc, status, _, body = curl(gw, "/query/nope", "--cacert " .. H.q(ca1.ca))
    assert.equal(0, rc)
    assert.equal(404, status)
    assert.equal("not_found", H.decode(body).error.code)
  end)

  it("a client that does not trust the CA refuses the certificate", function()
    local rc = curl(gw, "/query/one", "--cacert " .. H.q(ca2.ca))
    assert.equal(60, rc) -- curl: peer certificate cannot be authenticated
  end)

  it("plain HTTP to the TLS port is closed without an answer, and the gateway serves on", function()
    local status, err = H.http("GET", "http://127.0.0.1:" .. gw.port .. "/query/one", nil, nil, 5)
    assert.is_nil(status)
    assert.truthy(err)
    assert.truthy(gw:alive())
    assert.equal(200, select(2, curl(gw, "/query/one", "--cacert " .. H.q(ca1.ca))))
  end)

  it("TLS 1.0 and 1.1 are refused; 1.2 and 1.3 are accepted", function()
    -- SECLEVEL=0 lets this OpenSSL offer the old protocols at all
    assert.is_nil(negotiated(gw, "-tls1 -cipher DEFAULT:@SECLEVEL=0"))
    assert.is_nil(negotiated(gw, "-tls1_1 -cipher DEFAULT:@SECLEVEL=0"))
    assert.equal("TLSv1.2", negotiated(gw, "-tls1_2"))
    assert.equal("TLSv1.3", negotiated(gw, "-tls1_3"))
  end)

  it("TLS 1.2 offers only ECDHE suites with AEAD ciphers, in the server's order", function()
    for _, weak in ipairs { "AES128-SHA", "AES256-SHA256", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
      "ECDHE-RSA-AES256-SHA384", "DES-CBC3-SHA:@SECLEVEL=0" } do
      local protocol, _, out = negotiated(gw, "-tls1_2 -cipher " .. weak)
      assert(protocol == nil, weak .. " was accepted:\n" .. out)
    end
    for _, strong in ipairs { "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
      "ECDHE-RSA-CHACHA20-POLY1305" } do
      local protocol, cipher, out = negotiated(gw, "-tls1_2 -cipher " .. strong)
      assert(protocol == "TLSv1.2" and cipher == strong, strong .. " was refused:\n" .. out)
    end
    -- OpenSSL's client lists AES-256 first: the server's order still picks AES-128-GCM ...
    assert.equal("ECDHE-RSA-AES128-GCM-SHA256", select(2, negotiated(gw, "-tls1_2")))
    -- ... unless the client puts ChaCha20 first (no AES instructions)
    assert.equal("ECDHE-RSA-CHACHA20-POLY1305",
      select(2, negotiated(gw, "-tls1_2 -cipher ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256")))
  end)

  it("no session tickets: a TLS 1.2 session resumes from the server's cache", function()
    local sess = os.tmpname()
    local protocol, _, out = negotiated(gw, "-tls1_2 -sess_out " .. H.q(sess))
    assert.equal("TLSv1.2", protocol)
    assert.is_nil(out:find("TLS session ticket:", 1, true), out)
    local _, _, again = negotiated(gw, "-tls1_2 -sess_in " .. H.q(sess))
    os.remove(sess)
    assert.truthy(again:find("Reused, TLSv1.2", 1, true), again)
  end)

  it("a client that connects and says nothing is closed after client_timeout", function()
    local c = assert(socket.tcp())
    c:settimeout(10)
    assert(c:connect("127.0.0.1", gw.port))
    local t0 = H.now()
    local data, err = c:receive("*a")
    local waited = H.now() - t0
    c:close()
    assert.equal("", data or "")
    assert.is_true(err == nil or err == "closed", tostring(err))
    assert.is_true(waited >= 1.5 and waited < 6, "closed after " .. waited .. " s")
  end)

  it("SIGHUP reads a renewed certificate: new connections get it, the gateway serves on", function()
    H.must(("cp %s %s/live.crt && cp %s %s/live.key"):format(H.q(ca2.cert), H.q(dir), H.q(ca2.key), H.q(dir)))
    H.must("kill -HUP " .. gw.pid)
    local deadline, rc = H.now() + 10, nil
    repeat
      rc = curl(gw, "/query/one", "--cacert " .. H.q(ca2.ca))
      if rc ~= 0 then H.sleep(0.1) end
    until rc == 0 or H.now() > deadline
    assert(rc == 0, ("curl exit %s; alive: %s; log:\n%s"):format(rc, tostring(gw:alive()), gw:log()))
    assert.equal(60, (curl(gw, "/query/one", "--cacert " .. H.q(ca1.ca))))
  end)

  it("a connection accepted before SIGHUP still completes its handshake afterwards", function()
    -- h2o makes the TLS object only when the client's first bytes arrive: the context the
    -- connection was accepted with must outlive the reload. A relay in this process holds a
    -- silent connection to the gateway over the reload, then lets openssl s_client (through it, as
    -- an HTTP proxy) speak.
    local up = assert(socket.tcp())
    up:settimeout(5)
    assert(up:connect("127.0.0.1", gw.port))
    H.must("kill -HUP " .. gw.pid)
    local reloads = select(2, gw:log():gsub('"reloaded:', ""))
    local deadline = H.now() + 5
    while H.now() < deadline and select(2, gw:log():gsub('"reloaded:', "")) == reloads do H.sleep(0.02) end
    H.sleep(0.2) -- every worker has taken the new context by now
    local proxy = assert(socket.bind("127.0.0.1", 0))
    local _, pport = proxy:getsockname()
    local out = os.tmpname()
    H.must(("openssl s_client -proxy 127.0.0.1:%d -connect 127.0.0.1:%d -brief </dev/null >%s 2>&1 &")
      :format(pport, gw.port, H.q(out)))
    proxy:settimeout(5)
    local down = assert(proxy:accept())
    down:settimeout(5)
    repeat local line = assert(down:receive("*l")) until line == "" -- the CONNECT request
    assert(down:send("HTTP/1.1 200 Connection established\r\n\r\n"))
    down:settimeout(0)
    up:settimeout(0)
    local stop = H.now() + 3
    while H.now() < stop do
      local readable = socket.select({ down, up }, nil, 0.1)
      for _, s in ipairs(readable) do
        local data, err, partial = s:receive(65536)
        data = data or partial
        if data and #data > 0 then (s == down and up or down):send(data) end
        if err == "closed" then stop = 0 end
      end
    end
    down:close()
    up:close()
    proxy:close()
    local report = H.readfile(out) or ""
    os.remove(out)
    assert.truthy(report:find("Protocol version: TLSv1.3", 1, true), report)
    assert(gw:alive(), "the gateway died; log:\n" .. gw:log())
  end)

  it("a broken certificate on SIGHUP leaves the previous one serving", function()
    H.writefile(dir .. "/live.crt", "not a certificate\n")
    H.must("kill -HUP " .. gw.pid)
    local deadline = H.now() + 10
    while not gw:log():find("reload: tls.cert", 1, true) and H.now() < deadline do H.sleep(0.05) end
    assert.truthy(gw:log():find("reload: tls.cert", 1, true))
    local rc, status = curl(gw, "/query/one", "--cacert " .. H.q(ca2.ca))
    assert.equal(0, rc)
    assert.equal(200, status)
  end)

  describe("start-up refuses bad settings with one line", function()
    local function start_fails(tls)
      local g = H.start { dsn = db, scripts = scripts, wait = false, config = { workers = 1, tls = tls } }
      local deadline = H.now() + 10
      while not g:exit_code() and H.now() < deadline do H.sleep(0.05) end
      assert.equal(1, g:exit_code())
      return g:log()
    end

    it("a missing certificate file", function()
      local log = start_fails { cert = dir .. "/missing.crt", key = ca1.key }
      assert.truthy(log:find("tls.cert: " .. dir .. "/missing.crt", 1, true), log)
    end)

    it("a key that does not match the certificate", function()
      local log = start_fails { cert = ca1.cert, key = ca2.key }
      assert.truthy(log:find("tls.key", 1, true), log)
    end)

    it("a cert without a key", function()
      local log = start_fails { cert = ca1.cert }
      assert.truthy(log:find("tls: expected both cert and key, got only cert", 1, true), log)
    end)
  end)
end)
