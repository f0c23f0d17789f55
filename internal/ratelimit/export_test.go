package ratelimit

// RedisErrors is mairust_ratelimit_redis_errors_total, for the external tests.
var RedisErrors = redisErrors
