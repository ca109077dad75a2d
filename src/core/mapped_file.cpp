#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace moe {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Maps the file at a 2 MiB-aligned address and asks for transparent huge
// pages: the page cache keeps large files in 2 MiB folios, and with the
// mapping aligned the kernel maps them with one TLB entry each instead of
// 512. Generation streams ~1.5 GiB of weights per token through the TLB.
void* map_aligned(int fd, size_t size) {
  const auto map_plain = [&] { return ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0); };
  if (size < kHugePage) return map_plain();
  void* area = ::mmap(nullptr, size + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return map_plain();
  const uintptr_t base = reinterpret_cast<uintptr_t>(area);
  const uintptr_t aligned = (base + kHugePage - 1) & ~(kHugePage - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    ::munmap(area, size + kHugePage);
    return map_plain();
  }
  // Give back the unused ends of the reservation.
  if (aligned > base) ::munmap(area, aligned - base);
  const uintptr_t end = aligned + ((size + 4095) & ~size_t{4095});
  if (base + size + kHugePage > end) ::munmap(reinterpret_cast<void*>(end), base + size + kHugePage - end);
#ifdef MADV_HUGEPAGE
  ::madvise(p, size, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  return p;
}

}  // namespace

MappedFile::MappedFile(const std::string& path, bool map) : path_(path), mapped_(map) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error("cannot open '%s': %s", path.c_str(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw_error("cannot stat '%s': %s", path.c_str(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error("'%s' is not a regular file", path.c_str());
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && !map) {
    HostBuffer buf(size_);
    if (buf.data() == nullptr) {
      ::close(fd);
      throw_error("cannot read '%s' into memory: %zu bytes are not available (use the mapping: drop --no-mmap)",
                  path.c_str(), size_);
    }
    size_t done = 0;
    while (done < size_) {
      const ssize_t r = ::read(fd, buf.data() + done, size_ - done);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        const int e = r < 0 ? errno : EIO;
        ::close(fd);
        throw_error("cannot read '%s': %s", path.c_str(), std::strerror(e));
      }
      done += static_cast<size_t>(r);
    }
    owned_ = std::move(buf);
    data_ = owned_.data();
  } else if (size_ > 0) {
    void* p = map_aligned(fd, size_);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw_error("cannot mmap '%s' (%zu bytes): %s", path.c_str(), size_, std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

void MappedFile::prefetch(const uint8_t* data, size_t size, const std::function<void(uint64_t)>& progress) {
  constexpr size_t kChunk = size_t{64} << 20;
  const long page = std::max(4096L, ::sysconf(_SC_PAGESIZE));
  volatile uint8_t sink = 0;  // keeps the reads from being optimised away
  for (size_t off = 0; off < size; off += kChunk) {
    const size_t end = std::min(size, off + kChunk);
    uint8_t acc = 0;
    for (size_t p = off; p < end; p += static_cast<size_t>(page)) acc ^= data[p];
    sink = sink ^ acc;
    if (progress) progress(end - off);
  }
}

MappedFile::~MappedFile() {
  if (!data_) return;
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(const uint8_t* p, size_t n) const {
  if (!mapped_) owned_.release(p, n);
}

std::string MappedFile::lock() const {
  if (data_ && ::mlock(data_, size_) != 0)
    return strfmt("%s (RLIMIT_MEMLOCK may be too low: ulimit -l)", std::strerror(errno));
  return "";
}

}  // namespace moe
