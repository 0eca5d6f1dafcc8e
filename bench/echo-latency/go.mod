module taskgate/bench/echo-latency

go 1.21
