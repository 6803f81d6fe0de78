// The intrusive MPSC queue under the rpc dispatcher: FIFO, empty states, and a multi-producer
// stress run where every node must come out exactly once and in per-producer order.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/mpsc_queue.h"

namespace cable::rpc {
namespace {

struct Item : MpscNode {
  int producer = 0;
  int seq = 0;
};

TEST(MpscQueueTest, EmptyQueuePopsNothing) {
  MpscQueue q;
  EXPECT_TRUE(q.Empty());
  EXPECT_EQ(q.Pop(), nullptr);
  EXPECT_TRUE(q.Empty());
}

TEST(MpscQueueTest, SingleThreadFifoAndReuse) {
  MpscQueue q;
  Item items[3];
  for (int round = 0; round < 3; ++round) {
    for (auto& it : items) q.Push(&it);
    EXPECT_FALSE(q.Empty());
    EXPECT_EQ(q.Pop(), &items[0]);
    EXPECT_EQ(q.Pop(), &items[1]);
    EXPECT_FALSE(q.Empty());  // the last node is still queued until popped
    EXPECT_EQ(q.Pop(), &items[2]);
    EXPECT_TRUE(q.Empty());
    EXPECT_EQ(q.Pop(), nullptr);
  }
}

TEST(MpscQueueTest, InterleavedPushPop) {
  MpscQueue q;
  Item a, b, c;
  q.Push(&a);
  EXPECT_EQ(q.Pop(), &a);
  q.Push(&b);
  q.Push(&c);
  EXPECT_EQ(q.Pop(), &b);
  q.Push(&a);
  EXPECT_EQ(q.Pop(), &c);
  EXPECT_EQ(q.Pop(), &a);
  EXPECT_EQ(q.Pop(), nullptr);
  EXPECT_TRUE(q.Empty());
}

TEST(MpscQueueTest, ManyProducersEveryNodeOnceInProducerOrder) {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  std::vector<std::unique_ptr<Item[]>> items;
  for (int p = 0; p < kProducers; ++p) items.push_back(std::make_unique<Item[]>(kPerProducer));
  MpscQueue q;
  std::atomic<bool> go{false};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerProducer; ++i) {
        items[p][i].producer = p;
        items[p][i].seq = i;
        q.Push(&items[p][i]);
      }
    });
  }
  go.store(true);
  std::vector<int> next(kProducers, 0);
  int received = 0;
  while (received < kProducers * kPerProducer) {
    MpscNode* n = q.Pop();
    if (n == nullptr) {
      std::this_thread::yield();
      continue;
    }
    auto* item = static_cast<Item*>(n);
    ASSERT_EQ(item->seq, next[item->producer]) << "producer " << item->producer;
    ++next[item->producer];
    ++received;
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(q.Pop(), nullptr);
  EXPECT_TRUE(q.Empty());
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(next[p], kPerProducer);
}

}  // namespace
}  // namespace cable::rpc
