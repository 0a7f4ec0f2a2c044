package main

import (
	"os"
	"strconv"
	"time"
)

// Config holds the service settings, read from the environment.
type Config struct {
	HTTPHost        string
	HTTPPort        int
	Workers         int
	PoolSize        int
	ShutdownTimeout time.Duration
	WorkMinMs       int
	WorkMaxMs       int
}

// LoadConfig reads the environment; a missing or malformed value takes its default.
func LoadConfig() Config {
	return Config{
		HTTPHost:        os.Getenv("HTTP_HOST"),
		HTTPPort:        getEnvInt("HTTP_PORT", 8080),
		Workers:         getEnvInt("WORKERS", 5),
		PoolSize:        getEnvInt("POOL_SIZE", 10),
		ShutdownTimeout: time.Duration(getEnvInt("SHUTDOWN_TIMEOUT", 10)) * time.Second,
		WorkMinMs:       getEnvInt("WORK_MIN_MS", 1000),
		WorkMaxMs:       getEnvInt("WORK_MAX_MS", 5000),
	}
}

func getEnvInt(key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	return n
}
