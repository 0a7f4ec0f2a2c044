package main

import (
	"math/rand"
	"strings"
	"time"
)

// TaskService holds the use-cases.
type TaskService struct {
	store     *TaskStore
	pool      *WorkerPool
	workMinMs int
	workMaxMs int
}

func NewTaskService(store *TaskStore, pool *WorkerPool, cfg Config) *TaskService {
	return &TaskService{store: store, pool: pool, workMinMs: cfg.WorkMinMs, workMaxMs: cfg.WorkMaxMs}
}

// randomDuration draws the work duration: whole seconds when both bounds
// are whole seconds (1-5 s by default), milliseconds otherwise.
func (s *TaskService) randomDuration() time.Duration {
	if s.workMinMs%1000 == 0 && s.workMaxMs%1000 == 0 {
		lo, hi := s.workMinMs/1000, s.workMaxMs/1000
		return time.Duration(rand.Intn(hi-lo+1)+lo) * time.Second
	}
	return time.Duration(rand.Intn(s.workMaxMs-s.workMinMs+1)+s.workMinMs) * time.Millisecond
}

// Create stores a pending task and queues it. If the pool refuses it the
// task is marked failed and returned along with the pool's error.
func (s *TaskService) Create(in CreateTaskInput) (Task, error) {
	title := strings.TrimSpace(in.Title)
	description := strings.TrimSpace(in.Description)
	if title == "" {
		return Task{}, ErrInvalidInput
	}
	task := s.store.Create(&Task{
		Title:       title,
		Description: description,
		Status:      StatusPending,
		Duration:    s.randomDuration(),
	})
	if err := s.pool.Submit(task.ID); err != nil {
		failed, _ := s.store.UpdateStatus(task.ID, StatusFailed, err.Error())
		return failed, err
	}
	return task, nil
}

func (s *TaskService) Get(id int64) (Task, error) {
	return s.store.Get(id)
}

func (s *TaskService) List() []TaskSummary {
	return s.store.List()
}
