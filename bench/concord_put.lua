-- wrk script: PUT /v1/kv/bench/<n> with a 128-byte value, n cycling over 10,000 keys per thread.
local counter = 0
local value = string.rep("v", 128)
function init(args) counter = math.random(0, 1000000) end
function request()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench/" .. (counter % 10000), nil, value)
end
