#include "hub/local_index.h"

namespace cable::hub {

bool LocalIndex::Has(const Subscription* sub, const std::string& stream) {
  for (const auto& l : sub->links) {
    if (*l.bucket->name == stream) return true;
  }
  return false;
}

void LocalIndex::Add(Subscription* sub, const std::string& stream) {
  if (Has(sub, stream)) return;
  auto [it, inserted] = map_.try_emplace(stream);
  Bucket& b = it->second;
  if (inserted) {
    b.name = &it->first;
    if (observer_) observer_->OnStreamChange(stream, true);
  }
  b.entries.push_back({sub, static_cast<uint32_t>(sub->links.size())});
  sub->links.push_back({&b, static_cast<uint32_t>(b.entries.size() - 1)});
}

void LocalIndex::RemoveLink(Subscription* sub, uint32_t link_pos) {
  Subscription::Link link = sub->links[link_pos];
  Bucket* b = link.bucket;
  // Swap-remove the bucket entry, fixing the moved entry's back-reference.
  uint32_t last = static_cast<uint32_t>(b->entries.size() - 1);
  if (link.index != last) {
    Bucket::Entry moved = b->entries[last];
    b->entries[link.index] = moved;
    moved.sub->links[moved.link].index = link.index;
  }
  b->entries.pop_back();
  // Swap-remove the link, fixing the moved link's bucket entry.
  uint32_t last_link = static_cast<uint32_t>(sub->links.size() - 1);
  if (link_pos != last_link) {
    Subscription::Link moved = sub->links[last_link];
    sub->links[link_pos] = moved;
    moved.bucket->entries[moved.index].link = link_pos;
  }
  sub->links.pop_back();
  if (b->entries.empty()) {
    // Erase by iterator: the key that b->name points to dies with the node.
    auto it = map_.find(*b->name);
    if (observer_) observer_->OnStreamChange(it->first, false);
    map_.erase(it);
  }
}

void LocalIndex::Remove(Subscription* sub, const std::string& stream) {
  for (uint32_t i = 0; i < sub->links.size(); ++i) {
    if (*sub->links[i].bucket->name == stream) {
      RemoveLink(sub, i);
      return;
    }
  }
}

void LocalIndex::RemoveAll(Subscription* sub) {
  while (!sub->links.empty()) RemoveLink(sub, static_cast<uint32_t>(sub->links.size() - 1));
}

const Bucket* LocalIndex::Find(const std::string& stream) const {
  auto it = map_.find(stream);
  return it == map_.end() ? nullptr : &it->second;
}

}  // namespace cable::hub
