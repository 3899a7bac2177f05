-- Take back expired leases and forget expired acknowledgements and keys (after
-- queue_prelude.lua). No ARGV of its own. Answers whether more leases ran out than one batch.
promote()
for _, pair in ipairs({{K_ACKED, K_ACKED_END}, {K_KEYS, K_KEYS_END}}) do
  local gone = redis.call('ZRANGEBYSCORE', pair[2], '-inf', now, 'LIMIT', 0, BATCH)
  for _, old in ipairs(gone) do
    redis.call('HDEL', pair[1], old)
    redis.call('ZREM', pair[2], old)
  end
end
if reap() then
  return answer('true')
end
return answer('false')
