package main

import (
	"errors"
	"time"
)

type TaskStatus string

const (
	StatusPending TaskStatus = "pending"
	StatusRunning TaskStatus = "running"
	StatusDone    TaskStatus = "done"
	StatusFailed  TaskStatus = "failed"
)

// Task is a unit of work stored by the service.
type Task struct {
	ID          int64         `json:"id"`
	Title       string        `json:"title"`
	Description string        `json:"description"`
	Status      TaskStatus    `json:"status"`
	Error       string        `json:"error,omitempty"`
	Duration    time.Duration `json:"-"`
}

// TaskSummary is the short form returned by GET /tasks.
type TaskSummary struct {
	ID     int64      `json:"id"`
	Title  string     `json:"title"`
	Status TaskStatus `json:"status"`
}

// CreateTaskInput is the body of POST /tasks.
type CreateTaskInput struct {
	Title       string `json:"title"`
	Description string `json:"description"`
}

var (
	ErrInvalidInput = errors.New("invalid input")
	ErrNotFound     = errors.New("task not found")
	ErrPoolFull     = errors.New("task pool is full")
	ErrPoolClosed   = errors.New("task pool is closed")
)
