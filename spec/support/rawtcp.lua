-- spec/support/rawtcp.lua - raw TCP from LuaJIT's FFI for specs that send
-- what no HTTP client would (conflicting lengths, NUL bytes, floods of
-- idle connections): connect to "127.0.0.1:port", send bytes, read until
-- the peer closes or a receive timeout. Loopback only; every read is
-- bounded by SO_RCVTIMEO.
local ffi = require "ffi"

ffi.cdef [[
typedef unsigned int socklen_t;
struct sockaddr_in { uint16_t sin_family; uint16_t sin_port;
                     uint32_t sin_addr; uint8_t sin_zero[8]; };
struct timeval_rt { long tv_sec; long tv_usec; };
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, socklen_t len);
long write(int fd, const void *buf, size_t n);
long read(int fd, void *buf, size_t n);
int close(int fd);
int shutdown(int fd, int how);
int setsockopt(int fd, int level, int name, const void *val, socklen_t len);
uint16_t htons(uint16_t v);
int inet_pton(int af, const char *src, void *dst);
]]

local C = ffi.C
local M = {}

-- A connected socket (fd) or nil, err.
function M.connect(addr, timeout_s)
  local host, port = addr:match("^(.*):(%d+)$")
  local fd = C.socket(2, 1, 0)                    -- AF_INET, SOCK_STREAM
  if fd < 0 then return nil, "socket failed" end
  local sa = ffi.new("struct sockaddr_in")
  sa.sin_family = 2
  sa.sin_port = C.htons(tonumber(port))
  C.inet_pton(2, host, ffi.cast("void *", ffi.cast("char *", sa) + 4))
  local tv = ffi.new("struct timeval_rt", timeout_s or 5, 0)
  C.setsockopt(fd, 1, 20, tv, ffi.sizeof(tv))     -- SOL_SOCKET, SO_RCVTIMEO
  if C.connect(fd, sa, ffi.sizeof(sa)) ~= 0 then
    C.close(fd)
    return nil, "connect failed"
  end
  return fd
end

function M.send(fd, s)
  local off = 0
  while off < #s do
    local k = C.write(fd, ffi.cast("const char *", s) + off, #s - off)
    if k <= 0 then return false end
    off = off + tonumber(k)
  end
  return true
end

-- Everything until EOF or the receive timeout.
function M.read_all(fd)
  local buf, parts = ffi.new("char[65536]"), {}
  while true do
    local k = C.read(fd, buf, 65536)
    if k <= 0 then break end
    parts[#parts + 1] = ffi.string(buf, k)
  end
  return table.concat(parts)
end

function M.close(fd)
  C.close(fd)
end

-- Send `raw` on a new connection, half-close, read the answer(s):
-- status (first answer), body (first answer), the whole text.
function M.request(addr, raw)
  local fd, err = M.connect(addr)
  if not fd then return nil, err end
  M.send(fd, raw)
  C.shutdown(fd, 1)                               -- SHUT_WR
  local s = M.read_all(fd)
  C.close(fd)
  local status = tonumber(s:match("^HTTP/1%.%d (%d%d%d)"))
  local body = s:match("\r\n\r\n(.*)$")
  return status, body, s
end

return M
