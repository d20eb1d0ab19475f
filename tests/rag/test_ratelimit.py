import pytest

from shoal.engine.errors import InvalidArgumentError, ResourceExhaustedError
from shoal.rag import RateLimiter, TokenBucket


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_token_bucket_burst_then_refill():
    clock = Clock()
    b = TokenBucket(rate=2.0, capacity=3, clock=clock)
    assert [b.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.try_acquire() == pytest.approx(0.5)
    clock.t = 0.5
    assert b.try_acquire() == 0.0
    clock.t = 100.0  # refills only up to capacity
    assert [b.try_acquire() == 0.0 for _ in range(4)] == [True, True, True, False]


def test_limiter_is_per_key_and_raises_resource_exhausted():
    clock = Clock()
    lim = RateLimiter(rate=1.0, burst=2, clock=clock)
    lim.check("alice")
    lim.check("alice")
    with pytest.raises(ResourceExhaustedError, match="rate limit exceeded") as err:
        lim.check("alice")
    assert err.value.grpc_code == "RESOURCE_EXHAUSTED"
    lim.check("bob")  # other keys have their own bucket
    clock.t = 1.0
    lim.check("alice")
    with pytest.raises(InvalidArgumentError):
        RateLimiter(rate=0)
