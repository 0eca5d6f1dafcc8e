// echo-latency: what this machine gives any server at a fixed request rate,
// before gRPC, HTTP/2 or a policy: the round trip of a 64-byte message
// through a TCP echo server on loopback. bench/ext-authz.ts runs it against a
// Go echo server (this program) and a Node.js one (bench/lib/ext-authz-target.ts
// echo), on the same CPUs as the ext_authz servers and ghz.
//
//	echo-latency serve <host:port>                   prints "READY <host:port>"
//	echo-latency client <host:port> <rate/s> <seconds>  prints a JSON report
//
// The client sends on a fixed schedule over one connection (TCP_NODELAY) and
// does not wait for answers (open loop: a slow answer does not hold back the
// next request, so a stall shows in every request it delays). Each message
// carries the time it was actually sent; the latency of a message is from then
// until its echo is read back.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"time"
)

const msgSize = 64

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2])
	case "client":
		if len(os.Args) != 5 {
			usage()
		}
		rate, err1 := strconv.Atoi(os.Args[3])
		secs, err2 := strconv.ParseFloat(os.Args[4], 64)
		if err1 != nil || err2 != nil || rate <= 0 || secs <= 0 {
			usage()
		}
		if err := client(os.Args[2], rate, secs); err != nil {
			fmt.Fprintln(os.Stderr, "echo-latency:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: echo-latency serve <host:port> | echo-latency client <host:port> <rate/s> <seconds>")
	os.Exit(2)
}

func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-latency:", err)
		os.Exit(1)
	}
	fmt.Println("READY", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetNoDelay(true)
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

type report struct {
	Count      int     `json:"count"`
	RatePerSec float64 `json:"rate"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
	Over1ms    float64 `json:"over_1ms_pct"`
}

func client(addr string, rate int, secs float64) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	n := int(float64(rate) * secs)
	if n < 1 {
		n = 1
	}
	start := time.Now()
	lat := make([]float64, 0, n)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, msgSize)
		for i := 0; i < n; i++ {
			if _, err := io.ReadFull(c, buf); err != nil {
				readErr <- fmt.Errorf("reading echo %d of %d: %w", i+1, n, err)
				return
			}
			sent := int64(binary.LittleEndian.Uint64(buf))
			lat = append(lat, float64(time.Since(start).Nanoseconds()-sent)/1e6)
		}
		readErr <- nil
	}()
	interval := time.Second / time.Duration(rate)
	buf := make([]byte, msgSize)
	for i := 0; i < n; i++ {
		if d := time.Duration(i)*interval - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		binary.LittleEndian.PutUint64(buf, uint64(time.Since(start).Nanoseconds()))
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("sending message %d: %w", i+1, err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := <-readErr; err != nil {
		return err
	}
	elapsed := time.Since(start).Seconds()
	sort.Float64s(lat)
	over := 0
	for _, l := range lat {
		if l > 1 {
			over++
		}
	}
	// nearest rank: the smallest latency at least q of the messages did not exceed
	at := func(q float64) float64 { return lat[int(math.Ceil(q*float64(len(lat))))-1] }
	return json.NewEncoder(os.Stdout).Encode(report{
		Count: len(lat), RatePerSec: float64(len(lat)) / elapsed,
		P50: at(0.5), P90: at(0.9), P99: at(0.99), P999: at(0.999), Max: lat[len(lat)-1],
		Over1ms: 100 * float64(over) / float64(len(lat)),
	})
}
