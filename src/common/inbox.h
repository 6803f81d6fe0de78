// Inbox<T>: a lock-free multi-producer, single-consumer queue of intrusive nodes (T has `T* next`).
// Producers push with one atomic exchange-free CAS loop; the consumer takes everything at once and
// gets it back in push order. Push() tells the producer whether the inbox was empty, so a wake-up
// is sent only on the empty → non-empty edge (h2o's multithread rule).
#pragma once

#include <atomic>

namespace cable {

template <typename T>
class Inbox {
 public:
  // Any thread. Returns true if the inbox was empty before this push.
  bool Push(T* node) {
    T* head = head_.load(std::memory_order_relaxed);
    do {
      node->next = head;
    } while (!head_.compare_exchange_weak(head, node, std::memory_order_release,
                                          std::memory_order_relaxed));
    return head == nullptr;
  }
  // Consumer only: all queued nodes, oldest first, as a linked list through `next`.
  T* TakeAll() {
    T* list = head_.exchange(nullptr, std::memory_order_acquire);
    T* reversed = nullptr;
    while (list) {
      T* next = list->next;
      list->next = reversed;
      reversed = list;
      list = next;
    }
    return reversed;
  }
  bool Empty() const { return head_.load(std::memory_order_acquire) == nullptr; }

 private:
  std::atomic<T*> head_{nullptr};
};

}  // namespace cable
