// Command worker-pool-go-reference is a standard-library Go port of the
// original task service, kept as the baseline for benches/load/run.sh.
// It is deliberately not optimised: it stands for the original.
package main

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	cfg := LoadConfig()

	store := NewTaskStore()
	pool := NewWorkerPool(cfg.Workers, cfg.PoolSize, store)
	pool.Start()
	service := NewTaskService(store, pool, cfg)
	handler := NewTaskHandler(service)

	srv := &http.Server{
		Addr:    net.JoinHostPort(cfg.HTTPHost, strconv.Itoa(cfg.HTTPPort)),
		Handler: NewRouter(handler),
	}

	go func() {
		log.Printf("listening on %s: %d workers, pool of %d", srv.Addr, cfg.Workers, cfg.PoolSize)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("server error: %v", err)
		}
	}()

	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGINT, syscall.SIGTERM)
	sig := <-quit
	log.Printf("shutdown: %v received", sig)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("shutdown: server: %v", err)
	}
	pool.Close()

	done := make(chan struct{})
	go func() {
		pool.Wait()
		close(done)
	}()
	select {
	case <-done:
		log.Printf("shutdown: all workers finished")
	case <-ctx.Done():
		log.Printf("shutdown: timed out waiting for workers")
		os.Exit(1)
	}
}
