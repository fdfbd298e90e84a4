// Cortex-M entry point for edgemnist firmware: runs every embedded test digit once under
// a profiler that counts instructions per op, prints machine-readable `EDGEMNIST ...`
// lines through semihosting and exits with
//   0  every digit's int8 scores equal the expected ones (bit-exact)
//   1  some digit's scores differ
//   2  setup() or an Invoke() failed
//   3  a fault (startup.c)
#include <stdint.h>

#include "main_functions.h"
#include "platform.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

namespace {

constexpr char kInvokeTag[] = "EDGEMNIST_INVOKE";

bool SameString(const char* a, const char* b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr) return false;
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

void Write(const char* s) { edgemnist_write(s); }
void WriteU64(uint64_t v) { edgemnist_write_u64(v); }

// Counts instructions per inference (the "EDGEMNIST_INVOKE" event, printed as each one
// ends: any number of digits) and per op position within an inference (TFLM reports every
// op with its type as the tag; the k-th op event of an inference is operator k). Events may
// nest (the whole-inference event contains the per-op ones).
class InstructionProfiler : public tflite::MicroProfilerInterface {
 public:
  // Operators profiled per inference (edgemnist's models have under 32); later ones are counted
  // as dropped. The table is RAM the board must hold beside the arena: 16 B per operator, small
  // enough for the micro:bit's 16 KB.
  static constexpr int kMaxOps = 48;
  static constexpr int kMaxDepth = 8;

  uint32_t BeginEvent(const char* tag) override {
    if (depth_ >= kMaxDepth) {
      ++dropped_;
      return kMaxDepth;  // EndEvent ignores it
    }
    const int slot = depth_++;
    open_[slot].tag = tag;
    if (SameString(tag, kInvokeTag)) {
      next_op_ = 0;
      open_[slot].op = -1;
    } else {
      open_[slot].op = next_op_++;
    }
    open_[slot].start = edgemnist_ticks();
    return static_cast<uint32_t>(slot);
  }

  void EndEvent(uint32_t event_handle) override {
    const uint64_t end = edgemnist_ticks();
    if (event_handle >= static_cast<uint32_t>(kMaxDepth) || static_cast<int>(event_handle) >= depth_) return;
    const Open& open = open_[event_handle];
    const uint64_t ticks = end - open.start;
    depth_ = static_cast<int>(event_handle);  // closes this event and anything left open inside it
    if (open.op < 0) {  // a whole inference: report it now (outside any timed region)
      Write("EDGEMNIST invoke digit=");
      WriteU64(static_cast<uint64_t>(num_invokes_));
      Write(" instructions=");
      WriteU64(edgemnist_instructions(ticks));
      Write("\n");
      ++num_invokes_;
      return;
    }
    if (open.op >= kMaxOps) {
      ++dropped_;
      return;
    }
    Op& op = ops_[open.op];
    op.tag = open.tag != nullptr ? open.tag : "(null)";
    op.calls += 1;
    op.ticks += ticks;
    if (open.op >= num_ops_) num_ops_ = open.op + 1;
  }

  void Report() const {
    for (int i = 0; i < num_ops_; ++i) {
      Write("EDGEMNIST op index=");
      WriteU64(static_cast<uint64_t>(i));
      Write(" tag=");
      Write(ops_[i].tag);
      Write(" calls=");
      WriteU64(ops_[i].calls);
      Write(" instructions=");
      WriteU64(edgemnist_instructions(ops_[i].ticks));
      Write("\n");
    }
    if (dropped_ != 0) {
      Write("EDGEMNIST profiler_dropped events=");
      WriteU64(dropped_);
      Write("\n");
    }
  }

  uint64_t num_invokes() const { return num_invokes_; }

 private:
  struct Open {
    const char* tag;
    int op;  // position in the inference, -1 for the inference itself
    uint64_t start;
  };
  struct Op {
    const char* tag;
    uint32_t calls;
    uint64_t ticks;
  };

  Open open_[kMaxDepth] = {};
  Op ops_[kMaxOps] = {};
  int depth_ = 0;
  int next_op_ = 0;
  int num_ops_ = 0;
  uint64_t num_invokes_ = 0;
  uint64_t dropped_ = 0;
};

InstructionProfiler g_profiler;

void DebugLogToSemihosting(const char* s) { edgemnist_write(s); }

}  // namespace

int main() {
  edgemnist_platform_init();
  RegisterDebugLogCallback(DebugLogToSemihosting);

  uint32_t num = 0;
  uint32_t den = 0;
  edgemnist_calibration(&num, &den);
  Write("EDGEMNIST calibration instructions_per_tick=");
  WriteU64(num);
  Write("/");
  WriteU64(den);
  edgemnist_calibration_measured(&num, &den);
  Write(" measured=");
  WriteU64(num);
  Write("/");
  WriteU64(den);
  Write("\n");

  if (setup(&g_profiler) != kTfLiteOk) {
    Write("EDGEMNIST error setup\n");
    return 2;
  }
  const int mismatches = RunTestDigits();
  g_profiler.Report();
  if (mismatches < 0) {
    Write("EDGEMNIST error invoke\n");
    return 2;
  }
  Write("EDGEMNIST result digits=");
  WriteU64(static_cast<uint64_t>(g_profiler.num_invokes()));
  Write(" mismatches=");
  WriteU64(static_cast<uint64_t>(mismatches));
  Write(mismatches == 0 ? " bit_exact=1\n" : " bit_exact=0\n");
  return mismatches == 0 ? 0 : 1;
}
