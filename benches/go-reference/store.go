package main

import (
	"sort"
	"sync"
)

// TaskStore keeps every task in memory.
type TaskStore struct {
	mu     sync.RWMutex
	tasks  map[int64]*Task
	nextID int64
}

func NewTaskStore() *TaskStore {
	return &TaskStore{tasks: make(map[int64]*Task)}
}

// Create assigns the next id, stores the task and returns a copy.
func (s *TaskStore) Create(t *Task) Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	t.ID = s.nextID
	s.tasks[t.ID] = t
	return *t
}

// Get returns a copy of the task with this id.
func (s *TaskStore) Get(id int64) (Task, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tasks[id]
	if !ok {
		return Task{}, ErrNotFound
	}
	return *t, nil
}

// List returns every task's summary, sorted by id.
func (s *TaskStore) List() []TaskSummary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	list := make([]TaskSummary, 0, len(s.tasks))
	for _, t := range s.tasks {
		list = append(list, TaskSummary{ID: t.ID, Title: t.Title, Status: t.Status})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}

// UpdateStatus sets a task's status (and error message) and returns a copy.
func (s *TaskStore) UpdateStatus(id int64, status TaskStatus, errMsg string) (Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return Task{}, ErrNotFound
	}
	t.Status = status
	t.Error = errMsg
	return *t, nil
}
