package main

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestGoCopyRelaysBothWaysAndHalfCloses: the plain Go relay forwards both
// directions and passes a FIN on, so a request answered after the client's
// half-close arrives whole.
func TestGoCopyRelaysBothWaysAndHalfCloses(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c) // until the client's FIN
		c.Write(append([]byte("answer to "), req...))
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		goCopyConn(c.(*net.TCPConn), up.Addr().String())
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "answer to ping" {
		t.Fatalf("got %q, %v; want the answer, then EOF", got, err)
	}
}
