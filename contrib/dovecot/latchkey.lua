-- A Dovecot passdb that asks latchkey whether a login may pass
-- (Debian: dovecot-auth-lua and lua-socket; Dovecot 2.3). Use it as
--
--     passdb {
--       driver = lua
--       args = file=/etc/dovecot/latchkey.lua blocking=yes
--     }
--
-- blocking=yes runs it in Dovecot's auth worker processes, so a lookup
-- waiting on latchkey holds up no other login. A wrong password is a
-- password mismatch; a throttled or unanswered login is a temporary
-- failure (the client is told to try again later), never a wrong password.
--
-- Dovecot's auth cache keeps a login under the username as Dovecot has it
-- (after auth_username_format), and the cache flusher flushes latchkey's
-- spelling of it. So this script asks latchkey to refuse any other
-- spelling (X-Latchkey-Require-Canonical), before checking anything: a
-- client that sends "ａｌｉｃｅ" or "Straße" for "alice" or "strasse" is
-- refused, and no cache entry exists under a name no flush would reach.
-- The tests run this very file; see docs/proxies.md.
local http = require("socket.http")
local ltn12 = require("ltn12")
local mime = require("mime")

-- latchkey's proxy adapters (proxy_adapters.listen).
local ADAPTER = "http://127.0.0.1:8080/auth/dovecot"
-- The key of a caller with the authenticator role, alone on the first
-- line of a file only Dovecot's auth workers read.
local KEY_FILE = "/etc/dovecot/latchkey.key"
local key = nil

function script_init()
  local file = io.open(KEY_FILE, "r")
  if file == nil then
    dovecot.i_error("latchkey: cannot read " .. KEY_FILE)
    return 1
  end
  key = file:read("*l")
  file:close()
  http.TIMEOUT = 10
  return 0
end

local function protocol(service)
  if service == "submission" or service == "smtp" then
    return "smtp"
  end
  return service
end

function auth_password_verify(req, pass)
  local user = req:var_expand("%{user}")
  local ok, code, headers = http.request{
    url = ADAPTER,
    method = "GET",
    headers = {
      ["X-Latchkey-Key"] = key,
      ["X-Latchkey-Protocol"] = protocol(req:var_expand("%{service}")),
      ["X-Latchkey-Client-IP"] = req:var_expand("%{rip}"),
      ["X-Latchkey-Require-Canonical"] = "yes",
      ["Authorization"] = "Basic " .. mime.b64(user .. ":" .. pass),
    },
    sink = ltn12.sink.null(),
  }
  if ok == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "latchkey unreachable: " .. tostring(code)
  end
  if code == 204 then
    -- A latchkey too old to know X-Latchkey-Require-Canonical may sign in
    -- another spelling: no success is cached under it.
    if headers["x-latchkey-user"] ~= user then
      return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE,
        "latchkey signed in another spelling of the username: is it older than this script?"
    end
    return dovecot.auth.PASSDB_RESULT_OK, {}
  elseif code == 401 then
    if headers["x-latchkey-refused"] == "username-not-canonical" then
      req:log_warning("latchkey: refused, the username is not in latchkey's spelling "
        .. "(lowercase, no fullwidth or compatibility forms; see docs/proxies.md)")
    end
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "wrong password"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "latchkey answered " .. tostring(code)
end
