package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// runGoCopy is the plain Go relay the benchmark compares ccproxy with
// ("ccbench gocopy LISTEN UPSTREAM"): what every Go TCP proxy starts as,
// and the floor of what a Go relay costs. Per connection: a goroutine that
// dials the upstream, then one io.Copy per direction (splice(2) on Linux,
// as both ends are *net.TCPConn), a FIN passed on as CloseWrite, both
// closed when both directions ended. No inspection, no limits, no tracing.
func runGoCopy(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: ccbench gocopy LISTEN UPSTREAM")
	}
	listen, upstream := args[0], args[1]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			fmt.Fprintln(os.Stderr, "gocopy: accept:", err)
			continue
		}
		go goCopyConn(c.(*net.TCPConn), upstream)
	}
}

func goCopyConn(client *net.TCPConn, upstream string) {
	defer client.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	up := u.(*net.TCPConn)
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(up, client)
		up.CloseWrite()
	}()
	io.Copy(client, up)
	client.CloseWrite()
	wg.Wait()
}
