-- cli_help_spec.lua — `sluice COMMAND --help` (and -h) prints that command's usage on stdout and
-- exits 0 for every command `sluice --help` lists, without reading a config or touching the
-- database; an unknown command still exits 2.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local H = require "helper"

describe("sluice COMMAND --help", function()
  local tmp

  setup(function() tmp = H.tmpdir("sluice-help") end)
  teardown(function() if tmp then H.sh("rm -rf " .. H.q(tmp)) end end)

  -- The commands the overall usage lists: every one of them must answer --help.
  local function listed()
    local out, rc = H.sh(H.q(H.bin) .. " --help")
    assert.equal(0, rc)
    local cmds, seen = {}, {}
    for cmd in out:gmatch("\n%s+sluice (%l+)") do
      if not seen[cmd] then
        seen[cmd] = true
        cmds[#cmds + 1] = cmd
      end
    end
    return cmds
  end

  it("lists serve, migrate, check, import, new and version", function()
    local cmds = table.concat(listed(), " ")
    for _, c in ipairs { "serve", "migrate", "check", "import", "new", "version" } do
      assert.matches("%f[%l]" .. c .. "%f[^%l]", cmds)
    end
  end)

  it("each command's --help and -h print its usage and exit 0", function()
    for _, cmd in ipairs(listed()) do
      for _, flag in ipairs { "--help", "-h" } do
        -- from an empty folder with no conf/sluice.lua: the config is not read
        local out, rc, err = H.sh(("cd %s && %s %s %s"):format(H.q(tmp), H.q(H.bin), cmd, flag))
        assert.equal(0, rc, cmd .. " " .. flag .. ": " .. err)
        assert.equal("", err, cmd .. " " .. flag)
        assert.equal("usage: sluice " .. cmd, out:match("^usage: sluice %l+"), cmd .. " " .. flag)
        assert.truthy(#out > 40, cmd .. " " .. flag .. " says what it does")
      end
    end
  end)

  it("--help after other arguments too, and `sluice new --help` creates nothing", function()
    local out, rc = H.sh(("cd %s && %s migrate status --help"):format(H.q(tmp), H.q(H.bin)))
    assert.equal(0, rc)
    assert.matches("^usage: sluice migrate", out)
    out, rc = H.sh(("cd %s && %s serve --config nowhere.lua -h"):format(H.q(tmp), H.q(H.bin)))
    assert.equal(0, rc)
    assert.matches("^usage: sluice serve", out)
    H.must(("cd %s && %s new --help"):format(H.q(tmp), H.q(H.bin)))
    assert.equal("", (H.must("ls -A " .. H.q(tmp))))
  end)

  it("an unknown command still exits 2 with the overall usage", function()
    local _, rc, err = H.sh(H.q(H.bin) .. " frobnicate --help")
    assert.equal(2, rc)
    assert.matches('unknown command "frobnicate"', err, 1, true)
  end)
end)
