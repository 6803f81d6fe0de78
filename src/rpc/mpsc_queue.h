// Intrusive multi-producer single-consumer queue (Dmitry Vyukov's non-blocking MPSC design).
// Any thread may Push(); exactly one thread (the rpc dispatcher) may Pop()/Empty(). Push is one
// atomic exchange plus one store: wait-free, no mutex, no allocation, so ring threads and gRPC
// callback threads never block on it. The queue never owns nodes: the caller keeps a node alive
// from Push until the consumer has popped it, and a node is in at most one queue at a time.
#pragma once

#include <atomic>

namespace cable::rpc {

struct MpscNode {
  std::atomic<MpscNode*> next{nullptr};
};

class MpscQueue {
 public:
  MpscQueue() : head_(&stub_), tail_(&stub_) {}
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  // Any thread. seq_cst on the exchange: the dispatcher's "am I allowed to sleep" check (Empty)
  // pairs with the producer's later load of the sleeping flag (see Dispatcher::Wake).
  void Push(MpscNode* node) {
    node->next.store(nullptr, std::memory_order_relaxed);
    MpscNode* prev = head_.exchange(node, std::memory_order_seq_cst);
    // Between the exchange and this store the queue is briefly "unlinked": Pop() then returns
    // nullptr even though a node is queued. The producer always wakes the consumer after this
    // store, so the consumer comes back for it.
    prev->next.store(node, std::memory_order_release);
  }

  // Consumer only. Returns nullptr when empty or when a producer is between its two steps.
  MpscNode* Pop() {
    MpscNode* tail = tail_;
    MpscNode* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    Push(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  // Consumer only. False also while a push is half done, so a consumer never sleeps on it.
  // tail_ is itself the next node to hand out unless it is the stub, so "empty" means: only the
  // stub is left and no producer has swung head_ away from it.
  bool Empty() const {
    return tail_ == &stub_ && stub_.next.load(std::memory_order_acquire) == nullptr &&
           head_.load(std::memory_order_seq_cst) == &stub_;
  }

 private:
  alignas(64) std::atomic<MpscNode*> head_;  // producers' end
  alignas(64) MpscNode* tail_;               // consumer's end
  MpscNode stub_;
};

}  // namespace cable::rpc
