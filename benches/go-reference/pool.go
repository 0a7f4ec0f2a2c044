package main

import (
	"log"
	"sync"
	"time"
)

// WorkerPool runs queued tasks on a fixed number of goroutines.
type WorkerPool struct {
	tasks   chan int64
	store   *TaskStore
	workers int
	wg      sync.WaitGroup
	mu      sync.RWMutex
	closed  bool
}

func NewWorkerPool(workers, size int, store *TaskStore) *WorkerPool {
	return &WorkerPool{
		tasks:   make(chan int64, size),
		store:   store,
		workers: workers,
	}
}

func (p *WorkerPool) Start() {
	for i := 1; i <= p.workers; i++ {
		p.wg.Add(1)
		go p.worker(i)
	}
}

func (p *WorkerPool) worker(n int) {
	defer p.wg.Done()
	for id := range p.tasks {
		t, err := p.store.UpdateStatus(id, StatusRunning, "")
		if err != nil {
			continue
		}
		log.Printf("worker %d: task %d started, planned %v", n, id, t.Duration)
		start := time.Now()
		time.Sleep(t.Duration)
		p.store.UpdateStatus(id, StatusDone, "")
		log.Printf("worker %d: task %d done in %v, planned %v", n, id, time.Since(start).Round(time.Millisecond), t.Duration)
	}
}

// Submit queues a task id without blocking.
func (p *WorkerPool) Submit(id int64) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPoolClosed
	}
	select {
	case p.tasks <- id:
		return nil
	default:
		return ErrPoolFull
	}
}

// Close stops accepting tasks; workers drain what is queued.
func (p *WorkerPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.tasks)
	}
}

// Wait blocks until every worker has exited.
func (p *WorkerPool) Wait() {
	p.wg.Wait()
}
