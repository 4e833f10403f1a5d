package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if path := os.Getenv("PSPAWN_NOSTART_MARKER"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			os.Exit(125)
		}
		f.Write([]byte("x"))
		f.Close()
	}
	_, err := net.LookupHost("localhost")
	fmt.Println("hello", err == nil)
}
