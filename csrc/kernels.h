// The table of ISA-specific kernels: one per instruction-set level, chosen once per process (dispatch.cpp).
//
// Everything under csrc/isa/ is compiled once per level (avx512.cpp, avx2.cpp, baseline.cpp), each time with that
// level's compiler flags and into a namespace of its own, so that no inline function compiled for one level can be
// picked by the linker for another. The time loops (lstm.cpp, gru.cpp, rnn.cpp) are compiled for the baseline and
// call the element-wise work through kernels(). Levels, best first:
//   avx512  x86-64-v4 (AVX-512 F/BW/CD/DQ/VL): 16 float lanes
//   avx2    x86-64-v3 (AVX2, FMA, BMI2, F16C, MOVBE): 8 float lanes
//   sse2    x86-64 baseline: 4 float lanes (on other architectures this level is called "generic" and uses the
//           compiler's 128-bit vectors: NEON on aarch64)
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "rnn.h"  // Nonlinearity

namespace pylstm {

// Widest float32 vector of any level: packed-weight buffers are sized for it, so a workspace never depends on the
// level chosen at run time.
constexpr index_t kMaxLanes = 16;

namespace detail {

// The largest block of inputs (steps × N × I values) the fused loops project with their own tiles rather than BLAS:
// measured on the LSTM benchmark cases, own tiles won at 128 KB (AVX2 small: 3.3 → 3.0 ms), tied at 256 KB (medium)
// and lost at 1 MB (large: 276 → 339 ms at AVX2, 179 → 233 ms at AVX-512), where rows 4 KB apart are broadcast
// from L2.
constexpr index_t kOwnProjectionBytes = 256 * 1024;

// A single-row product whose weights come from L3 (they do not stay in the thread's L2 between uses: a stream of
// several layers re-reads all of them every step) prefetches them this many bytes ahead. On a 2-core Zen 5 with
// 1 MiB of L2 per core (2026-12-05, alternating builds): a 2-layer stream (I = H = 256, 2.1 MB of packed weights per
// thread on 2 threads) took 24.7-25.1 µs per step without, 22.8-23.3 with 2048 ahead (23.0-23.3 with 1024, 23.6-24.5
// with 4096); a 1-layer one on one thread (2.1 MB) 23.3-23.5 -> 21.0-21.3 µs. A 1-layer stream on 2 threads
// (1.05 MB each, just over that L2) measured the same with and without (9.7-10.4 against 9.8-10.3 µs, three rounds).
constexpr int kPrefetchBytes = 2048;
// Whether `bytes` of weights read per step by each thread exceed what its L2 keeps beside everything else (three
// quarters of it, as sysconf reports the L2 of one core).
bool weights_beyond_l2(index_t bytes);

template <typename Real>
constexpr index_t kMaxLanesOf = kMaxLanes * index_t(sizeof(float)) / index_t(sizeof(Real));

// The fused LSTM forward, float32 or float64 (lstm.cpp sets it up; each level's kernels.inc runs it on the pool).
template <typename Real>
struct FusedLstmT {
  Real* y;  index_t ldy;
  Real* c_state;     // inference: c_n, updated in place
  Real* gates;       // [rows][GH]: the cache (training) or one block of input projections (inference)
  Real* cs;          // training: [T][N][H] c_t;  nullptr in inference
  Real* tcs;         // training: [T][N][H] tanh(c_t)
  Real* packed;      // W_hh [blocks][H][G][lanes], bias [blocks][G][lanes], W_ih [blocks][I][G][lanes]; 64-byte
                     // aligned, room for lstm_fused_packed_size<Real>(I, H, P)
  const Real* x; const Real* h0;
  const Real* c0;    // c_{-1}: c0 or zeros (training), c_n (inference)
  const Real* W_ih; const Real* W_hh; const Real* bias;  // W_ih may be nullptr when prepacked: the inputs are
                                                         // then projected from the packed copy at any size
  // With a projection (LSTMP): W_hr [P][H]; m [N][H] takes o ⊙ tanh(c_t), and h_t = m W_hrᵀ (P columns of y) is
  // a second phase of each step. Without: W_hr nullptr, P = H.
  const Real* W_hr; Real* m;
  // Variable lengths: [T] rows running at each step (a batch sorted longest first), or nullptr for all N.
  const index_t* batch_sizes;
  const Real* peep;  // peephole weights [3][H] (p_i, p_f, p_o), or nullptr for none (never with a projection)
  index_t T, N, I, H, P, block;
  int parts;
  bool reverse;
  bool prepacked;    // `packed` already holds this call's weights (lstm_pack or an earlier call): skip packing
  bool prefetch;     // single-row products prefetch the weights (they come from L3: detail::weights_beyond_l2)
  bool descending;   // the unit blocks in descending order (a stream alternates it from step to step)
  // Recurrent dropout (RecurrentDropout, common.h): rmask [N][P]; each step writes rmask ⊙ h_t into rmasked
  // [T][N][P] and the next step's product reads it; h0_product is what the first products read (h0, or rmask ⊙ h0).
  // nullptr: off.
  const Real* rmask; Real* rmasked; const Real* h0_product;
  Zoneout<Real> zone;  // zoneout (common.h; not with a projection or peepholes), off when !zone.on()
};
using FusedLstm = FusedLstmT<float>;

// The fused LSTM backward (no projection): one parallel region for the whole sequence. Each thread owns blocks of
// hidden units: per step it runs the element-wise backward of its units (their dh, dc, and their columns of da_t),
// meets the others at one barrier, and then computes its units' columns of dh_{t-1} = da_t W_hh from all of da_t.
// Nothing it reads after the barrier is written by another thread before the next barrier.
template <typename Real>
struct FusedLstmBackwardT {
  Real* da;          // [T][N][GH] the activated gates in, the pre-activation gradients out
  Real* dh;          // [N][H] the running ∂L/∂h_t: dh_n in, ∂L/∂h0 out
  Real* dc;          // [N][H] the running ∂L/∂c_t: dc_n in, ∂L/∂c0 out
  Real* tcs;         // [T][N][H] tanh(c_t) in, o ⊙ tanh(c_t) out (lstm_row_backward's convention)
  Real* cs;          // [T][N][H] c_t (with a projection, step t's slot then takes ∂L/∂h_t)
  const Real* c0;    // [N][H] c_{-1}: c0 or zeros
  const Real* dy;    // step t's ∂L/∂y rows at dy + t·dy_step, row stride lddy (both 0 for a zero block)
  index_t lddy, dy_step;
  const Real* W_hh;  // [GH][P]
  // [GH·P] scratch (64-byte aligned) for W_hh by column groups (tiles.inc): each thread packs the whole groups of its
  // own columns before the first step and its products read them there; nullptr: the products read W_hh in place.
  Real* W_groups;
  // With a projection (LSTMP): W_hr [P][H], dm [N][H] scratch; the c_t slot of step t (its first P columns, cs
  // rows of H) takes ∂L/∂h_t, as the BLAS loop leaves it for dW_hr. Without: W_hr nullptr, P = H.
  const Real* W_hr; Real* dm;
  const Real* zeros; // [N][H] (with a projection: the element-wise pass's dy)
  const index_t* batch_sizes;  // variable lengths: as in FusedLstmT
  const Real* peep;  // peephole weights [3][H], or nullptr (then dpeep is unused); never with a projection
  Real* dpeep;       // [3][H] accumulated: each thread adds its own units' columns
  const Real* rmask; // recurrent dropout's mask [N][P]: dh_{t-1} = rmask ⊙ (da_t W_hh); nullptr: off
  // Zoneout's masks (zone.keep_c, keep_h [T][N][H]; off when !zone.on()): the element-wise pass takes (1 − d) of
  // dh_t and dc_t, and the kept parts d ⊙ dh_t (parked in dkeep [N][H] until the product has written dh_{t-1}) and
  // d ⊙ dc_t go straight to step t−1.
  Zoneout<Real> zone; Real* dkeep;
  index_t T, N, H, P;
  int parts;
  bool reverse;
};

// ---- the layer-norm LSTM (lstm.h: Weights::ln) ----
//
// Its training cache, laid out once for the core, the size function and the loops: per step and row, in
// [T][N][...] slots (GH = 4H). Inference uses the same layout for one step as scratch (T = 1).
template <typename Real>
struct LstmLnCache {
  Real* xa;      // [T][N][GH] x_t W_ihᵀ in, x̂ (its normalised form) out; backward: ∂L/∂(x_t W_ihᵀ)
  Real* ha;      // [T][N][GH] the recurrent product in, ĥ out; backward: ∂L/∂(the product)
  Real* gates;   // [T][N][GH] the activated i, f, g, o; backward: ∂L/∂a
  Real* c_prev;  // [T][N][H]  c_{t-1}
  Real* cn;      // [T][N][H]  ĉ, the normalised c̃_t (the plain cell's new c)
  Real* tn;      // [T][N][H]  tanh(γ_c ⊙ ĉ + β_c)
  Real* hp;      // [T][N][H]  what the recurrent product read: h_{t-1}, or with recurrent dropout mask ⊙ h_{t-1}
  Real* rstd;    // [T][N][3]  1/σ of x_t W_ihᵀ, of the product and of c̃_t
};
// The one layout: its size in elements, and with `base` the slots' pointers in *c.
template <typename Real>
inline index_t lstm_ln_cache_layout(index_t T, index_t N, index_t H, Real* base = nullptr,
                                    LstmLnCache<Real>* c = nullptr) {
  const index_t rows = T * N, GH = 4 * H;
  LstmLnCache<Real> unused{};
  LstmLnCache<Real>& s = c ? *c : unused;
  Real** const slots[] = {&s.xa, &s.ha, &s.gates, &s.c_prev, &s.cn, &s.tn, &s.hp, &s.rstd};
  const index_t sizes[] = {rows * GH, rows * GH, rows * GH, rows * H, rows * H, rows * H, rows * H, rows * 3};
  index_t offset = 0;
  for (int k = 0; k < 8; ++k) {
    if (base) *slots[k] = base + offset;
    offset += sizes[k];
  }
  return offset;
}

// The layer-norm LSTM forward of one layer direction (isa/layer_norm.inc). Rows are independent through time, so
// the threads split the batch: part p of F.parts takes its rows through all T steps (the step's products with the
// register tiles over the whole packed W_hh, then the normalisations and gates row by row) and never waits for
// another.
template <typename Real>
struct LstmLnT {
  LstmLnCache<Real> at;  // training: the cache; inference: one step's scratch (its xa unused)
  bool training;
  // The input projections x_t W_ihᵀ of steps [s0, s1) (processing order), rows in time order from time t_base:
  // training, the cache's xa (all T steps, t_base 0); inference, one block of steps. Normalised in place.
  Real* xproj;  index_t s0, s1, t_base;
  bool pack;             // pack W_hh first (the first region of a call)
  Real* y;  index_t ldy;
  Real* h;  Real* c;     // [N][H] the running state: h0 and c0 in, the final state out (running rows only)
  Real* hn;              // [N][H] scratch: h̃_t
  const Real* W_hh;
  Real* packed;          // W_hh packed whole (the hh part of lstm_packed_layout(lanes, I, H, H)): the threads of
                         // the first region pack their share of unit blocks and meet once; 64-byte aligned
  const Real* bias;      // [GH] b_ih + b_hh (zeros without biases)
  const Real* ln_ih; const Real* ln_hh; const Real* ln_c; const Real* ln_c_bias;  // γ_ih, γ_hh [GH]; γ_c, β_c [H]
  const index_t* batch_sizes;  // variable lengths: as in FusedLstmT
  const Real* rmask;     // recurrent dropout's mask [N][H], or nullptr
  Zoneout<Real> zone;    // zoneout, of the normalised cell's new state (see lstm.h), off when !zone.on()
  index_t T, N, I, H;
  int parts;             // row parts (at most N)
  bool reverse;
};

// Its backward: the same split by rows. Per step each part runs the element-wise backward of its rows (the
// gradients of the three normalisations included) and then dh_{t-1} = (∂L/∂product) W_hh on its rows (W_hh read in
// place). The sums of
// the γ, β and bias gradients go to the part's own row of `partial`; the caller adds the parts up in order.
template <typename Real>
struct LstmLnBackwardT {
  LstmLnCache<Real> at;  // the forward's cache, consumed (xa, ha and gates take their gradients)
  Real* dh;  Real* dc;   // [N][H] the running ∂L/∂h_t and ∂L/∂c_t: dh_n, dc_n in, ∂L/∂h0, ∂L/∂c0 out
  Real* dkeep;           // [N][H] scratch: zoneout's kept part of dh_t
  const Real* dy;  index_t lddy, dy_step;  // as in FusedLstmBackwardT
  const Real* W_hh;
  const Real* ln_ih; const Real* ln_hh; const Real* ln_c;
  Real* partial;         // [parts][3·GH + 2·H]: Σ ∂L/∂a ⊙ x̂, Σ ∂L/∂a ⊙ ĥ, Σ ∂L/∂a, then γ_c's and β_c's sums
  const index_t* batch_sizes;
  const Real* rmask;
  Zoneout<Real> zone;
  index_t T, N, H;
  int parts;
  bool reverse;
};

// The plain LSTM split by rows (isa/row_split.inc), for batches with rows for every thread: part p of `parts` takes
// its rows through the steps [s0, s1) with no barrier per step (rows never meet through time), its products with
// the register tiles over the whole packed W_hh. No projection or peepholes.
template <typename Real>
struct LstmRowsT {
  Real* gates;  index_t t_base;  // [steps][N][GH] x_t W_ihᵀ for the times from t_base on (training: the cache, all
                                 // T; inference: one block); the forward adds the product and leaves the gates
  Real* cs;  Real* tcs;          // training: [T][N][H] c_t, tanh(c_t); inference: [N][H] scratch each
  Real* y;  index_t ldy;
  Real* h;  Real* c;             // [N][H] the running state: h0, c0 in; the final state out
  Real* packed;                  // W_hh packed whole (lstm_packed_layout's hh part), 64-byte aligned
  const Real* W_hh;  const Real* bias;  // bias [GH]: b_ih + b_hh (zeros without)
  const index_t* batch_sizes;
  // Recurrent dropout (RecurrentDropout, common.h): the products read rmask ⊙ h (made in hq [N][H]), and each step
  // records rmask ⊙ h_t in rmasked [T][N][H]; nullptr: off.
  const Real* rmask;  Real* rmasked;  Real* hq;
  Zoneout<Real> zone;  // zoneout of c and h (the cache keeps the zoned c_t and tanh(c̃_t)), off when !zone.on()
  index_t T, N, H, s0, s1;
  int parts;
  bool reverse, training, pack;  // pack: pack W_hh first (all threads, one barrier)
};
// Its backward: per step each part runs the element-wise backward of its rows, then dh_{t-1} = da_t W_hh on them.
template <typename Real>
struct LstmRowsBackwardT {
  Real* da;  Real* tcs;  const Real* cs;  const Real* c0;  // as FusedLstmBackwardT's (c0: c0 or zeros)
  Real* dh;  Real* dc;
  const Real* dy;  index_t lddy, dy_step;
  const Real* W_hh;
  // [GH·H] scratch (64-byte aligned) for the loop's copy of W_hh by column groups (tiles.inc, pack_column_groups),
  // which the threads fill between them before the first step; nullptr: the products read W_hh in place.
  Real* W_groups;
  const index_t* batch_sizes;
  const Real* rmask;   // recurrent dropout: dh_{t-1} = rmask ⊙ (da_t W_hh); nullptr: off
  // Zoneout's masks (zone.keep_c, keep_h): d ⊙ dh_t waits in dkeep [N][H] until the product has written dh_{t-1},
  // d ⊙ dc_t in dckeep [N][H]; zeros [N][H] stands in for dy once it has been added.
  Zoneout<Real> zone;  Real* dkeep;  Real* dckeep;  const Real* zeros;
  // [parts][GH]: each part's column sums of its rows of da over all steps (the bias gradient), added as each row's
  // da is made; zeroed by the caller. nullptr: no bias.
  Real* colsums;
  index_t T, N, H;
  int parts;
  bool reverse;
};

// The cells with one state that the fused loops run: one value selects the cell and its form.
enum class OneStateCell {
  GruResetAfter,   // PyTorch's GRU, linear_before_reset = true (3 gates)
  GruResetBefore,  // the original GRU, linear_before_reset = false (3 gates, two phases per step)
  RnnTanh,         // the Elman RNN (1 gate)
  RnnRelu,
  RnnSigmoid,
};
inline constexpr bool is_gru(OneStateCell c) {
  return c == OneStateCell::GruResetAfter || c == OneStateCell::GruResetBefore;
}
inline constexpr Nonlinearity nonlinearity_of(OneStateCell c) {
  return c == OneStateCell::RnnRelu ? Nonlinearity::Relu
         : c == OneStateCell::RnnSigmoid ? Nonlinearity::Sigmoid : Nonlinearity::Tanh;
}
inline constexpr OneStateCell rnn_cell(Nonlinearity nl) {
  return nl == Nonlinearity::Relu ? OneStateCell::RnnRelu
         : nl == Nonlinearity::Sigmoid ? OneStateCell::RnnSigmoid : OneStateCell::RnnTanh;
}

// The fused forward of the one-state cells, the GRU (both forms) and the RNN, in FusedLstmT's shape (see
// isa/single_fused.inc).
template <typename Real>
struct FusedSingleT {
  Real* y;  index_t ldy;
  Real* a;  index_t lda;  // [rows][lda]: the input projections of a block of steps (all T in training), then the
                          // activated gates r, z, n (GRU) or the pre-activations (RNN)
  Real* k;                // GRU inference: [N][H] for k = h W_hnᵀ + b_hn; nullptr in training, where k goes to
                          // column 3H of a's rows (the cache's k slot)
  Real* hg;               // GRU: [N][3H], one step's recurrent products
  Real* packed;           // W_hh [blocks][H][G][lanes], then W_ih [blocks][I][G][lanes]; 64-byte aligned, room for
                          // single_fused_packed_size<Real>
  const Real* zeros;      // GRU: [N][H], h_{-1} when h0 is absent
  const Real* x; const Real* h0; const Real* W_ih; const Real* W_hh;
  const Real* bi;         // GRU: b_ih [3H] (zeros when absent); RNN: b_ih + b_hh [H]
  const Real* bh;         // GRU: b_hh [3H]; RNN: unused
  index_t T, N, I, H, block;
  int parts;              // unit parts, or with `rows` row parts (at most N)
  bool reverse;
  bool rows;              // split the batch by rows (detail::rows_split; not the GRU with the reset before)
  OneStateCell cell;
  const index_t* batch_sizes;  // variable lengths: as in FusedLstmT
  // Recurrent dropout (RecurrentDropout, common.h): the products read h0_product (h0, or rmask ⊙ h0) and, after
  // the first step, rmasked [T][N][H], where each step writes rmask ⊙ h_t; the GRU's carry z ⊙ h_{t-1} reads the
  // unmasked h. rmask nullptr: off, and h0_product is h0.
  const Real* h0_product;
  const Real* rmask; Real* rmasked;
  Zoneout<Real> zone;  // zoneout of h (the GRU's only; zone.keep_c nullptr), off when !zone.on()
};

// The fused backward of the GRU (both forms) and the RNN: see isa/single_fused.inc.
template <typename Real>
struct FusedSingleBackwardT {
  Real* a;           // [T][N][lda] the cache (lda = 4H for the GRU: r, z, n, k; H for the RNN), overwritten with
                     // the gradients (da_r, da_z, da_n, dk) or da
  Real* dh;          // [N][H] the running ∂L/∂h_t: dh_n in, ∂L/∂h0 out
  const Real* y;  index_t ldy;  // the forward's outputs
  const Real* h0;    // [N][H] h_{-1}: h0 or zeros
  const Real* dy;    // step t's ∂L/∂y rows at dy + t·dy_step, row stride lddy (both 0 for a zero block)
  index_t lddy, dy_step;
  const Real* W_hh;  // [G·H][H]
  Real* W_groups;    // [G·H·H] scratch, or nullptr: as FusedLstmBackwardT's (W_hh's G·H rows, by groups of its columns)
  Real* dk;          // GRU original form: [N][H] scratch for ∂L/∂(r ⊙ h)
  // Recurrent dropout: rmask [N][H]; the products' part of dh_{t-1} is masked. The GRU keeps that part in dhr
  // [N][H] (scratch) before adding it to its carry's; the original form's r gradient reads the masked states ym
  // [T][N][H] and hm0 [N][H] (rmask ⊙ h0, or zeros). rmask nullptr: off.
  const Real* rmask; const Real* ym; const Real* hm0; Real* dhr;
  Zoneout<Real> zone;  // the GRU's zoneout masks (zone.keep_h [T][N][H]): d ⊙ dh_t goes straight to dh_{t−1}
  index_t T, N, H;
  int parts;
  bool reverse;
  OneStateCell cell;
  const index_t* batch_sizes;  // variable lengths: as in FusedLstmT
};

// p rounded up to the next 64-byte boundary (the packed buffers' sizes include the slack).
template <typename Real>
inline Real* align64(Real* p) {
  return reinterpret_cast<Real*>((reinterpret_cast<std::uintptr_t>(p) + 63) & ~std::uintptr_t(63));
}

// The packed weights, laid out once. Unit block b (lanes units, zeros beyond H) of a weight matrix with K columns is
// packed as [K][gates][lanes] (pack.inc), and the blocks follow each other. The packers, the fused loops and the
// size functions below all take their offsets (in elements) from these two functions.
//
// A one-state cell of G gates (the GRU's 3, the RNN's 1): W_hh [blocks][H][G][lanes], then W_ih [blocks][I][G][lanes].
// The original GRU splits its W_hh part as r, z [blocks][H][2][lanes] and n [blocks][H][1][lanes]. The RNN packs a
// thread's runs of four whole blocks as one [K][4][lanes] block in the same place (isa/pack.inc, rnn_groups).
struct OneStatePackedLayout {
  index_t hh, ih, size;
};
inline OneStatePackedLayout one_state_packed_layout(index_t lanes, index_t G, index_t I, index_t H) {
  const index_t blocks = (H + lanes - 1) / lanes;
  OneStatePackedLayout l{};
  l.hh = 0;
  l.ih = l.hh + blocks * H * G * lanes;
  l.size = l.ih + blocks * I * G * lanes;
  return l;
}

// An LSTM layer direction (4 gates, recurrent input P wide): W_hh [blocks][P][4][lanes], the summed bias
// [blocks][4][lanes], W_ih [blocks][I][4][lanes], and with a projection (P < H) W_hrᵀ [H][P].
struct LstmPackedLayout {
  index_t hh, bias, ih, hr, size;
};
inline LstmPackedLayout lstm_packed_layout(index_t lanes, index_t I, index_t H, index_t P) {
  const index_t blocks = (H + lanes - 1) / lanes, G = 4;
  LstmPackedLayout l{};
  l.hh = 0;
  l.bias = l.hh + blocks * P * G * lanes;
  l.ih = l.bias + blocks * G * lanes;
  l.hr = l.ih + blocks * I * G * lanes;
  l.size = l.hr + (P < H ? H * P : 0);
  return l;
}

// The workspaces hold packed weights of either element type in room sized for float32 (the sizes below with
// Real = float): float64 blocks have half the lanes, and H rounded up to a multiple of the double lanes is never
// more than H rounded up to a multiple of the float lanes, so the float64 layout never needs more elements.
static_assert(kMaxLanesOf<float> % kMaxLanesOf<double> == 0,
              "packed float64 weights fit in room sized for float32 only if the double lanes divide the float lanes");

// Elements of packed weights for a cell of G gates, input size I and hidden size H at any level, plus alignment
// slack.
template <typename Real>
inline index_t single_fused_packed_size(index_t G, index_t I, index_t H) {
  return one_state_packed_layout(kMaxLanesOf<Real>, G, I, H).size + kMaxLanesOf<Real>;
}

// Elements of packed W_hh, bias and W_ih for input size I and hidden size H at any level, plus slack to align the
// start to 64 bytes.
// With a projection (P < H) the recurrent weights have P columns, and W_hrᵀ [H][P] follows.
template <typename Real>
inline index_t lstm_fused_packed_size(index_t I, index_t H, index_t P) {
  return lstm_packed_layout(kMaxLanesOf<Real>, I, H, P).size + kMaxLanesOf<Real>;
}

// The regularizers' uniform 32-bit value number i under the key (s0, s1) (train.h, bernoulli_fill): two rounds of
// the lowbias32 mixer, the second keyed by s1 and i's high half.
inline std::uint32_t mix32(std::uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}
inline std::uint32_t bernoulli_u32(std::uint64_t i, std::uint32_t s0, std::uint32_t s1) {
  const std::uint32_t h = mix32(static_cast<std::uint32_t>(i) ^ s0);
  return mix32(h ^ (s1 + static_cast<std::uint32_t>(i >> 32) * 0x9e3779b9U));
}

// One Adam step's coefficients (train.h): m = b1 m + a1 g; v = b2 v + a2 g²; p −= step_size m / (√(v / c2) + eps).
template <typename Real>
struct AdamCoefficients {
  Real b1, b2, a1, a2, step_size, c2, eps;
};

}  // namespace detail

// One ISA level's kernels for one element type: the N-row element-wise passes of every cell (each documented where
// the cell declares its public wrapper, lstm.h and rnn.h, or where the GRU loop calls it, gru.cpp), the fused time
// loops, and the training step's passes. Each level fills it by field name (isa/table.inc).
template <typename Real>
struct Kernels {
  void (*lstm_forward)(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev, const Real* bias,
                       index_t N, index_t H);
  void (*lstm_backward)(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy, const Real* c_prev,
                        Real* tc, index_t N, index_t H);
  void (*gru_lbr_forward)(Real* h, index_t ldh, Real* a, index_t lda, Real* k, index_t ldk, const Real* hg,
                          const Real* hp, index_t ldp, const Real* bi, const Real* bh, index_t N, index_t H);
  void (*gru_orig_forward_rz)(Real* a, index_t lda, Real* k, index_t ldk, const Real* hg, const Real* hp,
                              index_t ldp, const Real* bi, const Real* bh, index_t N, index_t H);
  void (*gru_orig_forward_n)(Real* h, index_t ldh, Real* a, index_t lda, const Real* hg, const Real* hp,
                             index_t ldp, const Real* bi, const Real* bh, index_t N, index_t H);
  void (*gru_lbr_backward)(Real* a, index_t lda, Real* k, index_t ldk, Real* dg, Real* dh, const Real* dy,
                           index_t lddy, const Real* hp, index_t ldp, index_t N, index_t H);
  void (*gru_orig_backward_nz)(Real* a, index_t lda, Real* dh, const Real* dy, index_t lddy, const Real* hp,
                               index_t ldp, index_t N, index_t H);
  void (*gru_orig_backward_r)(Real* a, index_t lda, Real* dh, const Real* dk, const Real* hp, index_t ldp, index_t N,
                              index_t H);
  void (*rnn_forward)(Real* h, index_t ldh, const Real* a, const Real* bias, index_t N, index_t H, Nonlinearity nl);
  void (*rnn_backward)(Real* da, const Real* dh, const Real* dy, index_t lddy, const Real* h, index_t ldh, index_t N,
                       index_t H, Nonlinearity nl);
  void (*sigmoid)(Real* out, const Real* x, index_t n);
  void (*tanh)(Real* out, const Real* x, index_t n);
  // The fused time loops: each runs one thread's share (tid of nt) of a parallel region over the whole sequence
  // (see the structs above).
  void (*lstm_loop)(const detail::FusedLstmT<Real>& F, int tid, int nt);
  // Packs thread tid's part of F's weights (W_ih, W_hh, bias) into F.packed, as lstm_loop does first.
  void (*lstm_pack_weights)(const detail::FusedLstmT<Real>& F, int tid, int nt);
  void (*lstm_loop_backward)(const detail::FusedLstmBackwardT<Real>& B, int tid, int nt);
  // The layer-norm LSTM's loops (see detail::LstmLnT): thread tid of nt runs its share of the row parts.
  void (*lstm_ln_loop)(const detail::LstmLnT<Real>& F, int tid, int nt);
  void (*lstm_ln_loop_backward)(const detail::LstmLnBackwardT<Real>& B, int tid, int nt);
  // The plain LSTM split by rows (detail::LstmRowsT).
  void (*lstm_rows_loop)(const detail::LstmRowsT<Real>& F, int tid, int nt);
  void (*lstm_rows_loop_backward)(const detail::LstmRowsBackwardT<Real>& B, int tid, int nt);
  void (*one_state_loop)(const detail::FusedSingleT<Real>& F, int tid, int nt);
  void (*one_state_loop_backward)(const detail::FusedSingleBackwardT<Real>& B, int tid, int nt);
  // The LSTM's N-row passes with peepholes (peep [3][H]; dpeep [3][H] accumulated; c [N][H] is c_t).
  void (*lstm_forward_peep)(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev,
                            const Real* bias, const Real* peep, index_t N, index_t H);
  void (*lstm_backward_peep)(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy,
                             const Real* c_prev, Real* tc, const Real* c, const Real* peep, Real* dpeep, index_t N,
                             index_t H);
  // The training step's passes (train.h). adam: n elements of one tensor. softmax_xent_rows: rows [0, rows) of
  // logits z [rows][C] against targets t, writing d = (softmax − onehot)·inv_n; returns Σ −log softmax(z)[t].
  void (*adam)(Real* p, Real* m, Real* v, const Real* g, index_t n, const detail::AdamCoefficients<Real>& c);
  double (*softmax_xent_rows)(Real* d, const Real* z, const std::int64_t* t, index_t rows, index_t C, Real inv_n);
  // The regularizers' masks (train.h, bernoulli_fill): out[i − begin] for i in [begin, end) = below where the
  // keyed hash of i is under `threshold` (of 2^32), else above.
  void (*bernoulli)(Real* out, index_t begin, index_t end, std::uint64_t seed, std::uint32_t threshold, Real below,
                    Real above);
};

namespace detail {

// ---- int8 and bfloat16 (int8.h) ----
// The low-precision products: int8 (u8 inputs × s8 weights, dots of 4 into int32: vpdpbusd's form) and bfloat16
// (pairs into float32: vdpbf16ps's form). Reductions are padded to whole dots (zero weights; the inputs' padding is
// never multiplied by anything but 0).
enum class Lowp { Int8, Bf16 };
inline index_t lowp_group(Lowp p) { return p == Lowp::Int8 ? 4 : 2; }   // reduction steps per dot
inline index_t lowp_bytes(Lowp p) { return p == Lowp::Int8 ? 1 : 2; }   // bytes per weight and per input value
inline index_t lowp_kpad(Lowp p, index_t K) { return (K + lowp_group(p) - 1) / lowp_group(p) * lowp_group(p); }

// One weight matrix of V gate blocks (rows q·H + u, K columns) as panels of one unit block each: panel b is
// [Kp / group][V][lanes][group] values (unit b·lanes + l of gate q, columns group·s … group·s + group − 1), zeros
// beyond H and K. For int8, its row sums and scales follow as [blocks][V][lanes] int32 and float32 (bfloat16 has
// neither). Byte offsets from a 64-byte aligned start.
struct LowpPanels {
  index_t Kp, blocks, panel, w, rowsum, scale, size;  // panel: bytes of one unit block's panel
};
inline index_t round64(index_t bytes) { return (bytes + 63) / 64 * 64; }
inline LowpPanels lowp_panels(Lowp prec, index_t lanes, index_t V, index_t H, index_t K, index_t at) {
  LowpPanels p{};
  p.Kp = lowp_kpad(prec, K);
  p.blocks = (H + lanes - 1) / lanes;
  p.panel = p.Kp * V * lanes * lowp_bytes(prec);
  p.w = at;
  const index_t per_row = prec == Lowp::Int8 ? p.blocks * V * lanes * 4 : 0;
  p.rowsum = round64(p.w + p.blocks * p.panel);
  p.scale = round64(p.rowsum + per_row);
  p.size = round64(p.scale + per_row) - at;
  return p;
}

// The cells the low-precision loops run, and their gate blocks V (the vectors of one unit block's panel).
// Two of them run a second product per step, after a barrier: the LSTM with a projection (h_t = m_t W_hrᵀ, P wide,
// m_t = o ⊙ tanh(c_t)) and the original GRU (n = tanh(x W_inᵀ + b_in + (r ⊙ h_{t-1}) W_hnᵀ + b_hn)).
enum class LowpCell { Lstm, LstmProj, GruLbr, GruOrig, RnnTanh, RnnRelu, RnnSigmoid };
// Gate blocks of W_ih (and of the biases); of W_hh's panels (the original GRU's r and z only: its n block is the
// second product's).
inline index_t lowp_gates(LowpCell c) {
  return c == LowpCell::Lstm || c == LowpCell::LstmProj ? 4 : c == LowpCell::GruLbr || c == LowpCell::GruOrig ? 3 : 1;
}
inline index_t lowp_hh_gates(LowpCell c) { return c == LowpCell::GruOrig ? 2 : lowp_gates(c); }
inline bool lowp_two_phases(LowpCell c) { return c == LowpCell::LstmProj || c == LowpCell::GruOrig; }

// A low-precision layer direction: W_hh's panels (K = P, the width of h), W_ih's, the second product's panels p2
// (W_hr: P outputs, K = H; the original GRU's W_hn: H outputs, K = H; empty otherwise), the biases
// [blocks][2][V][lanes] (the GRUs' b_ih and b_hh; the other cells' b_ih + b_hh, then zeros) and the LSTM's peepholes
// [blocks][3][lanes] (p_i, p_f, p_o; zeros without), float32.
struct LowpLayout {
  LowpPanels hh, ih, p2;
  index_t bias, peep, size;
};
inline LowpLayout lowp_layout(Lowp prec, LowpCell cell, index_t lanes, index_t I, index_t H, index_t P) {
  const index_t V = lowp_gates(cell);
  LowpLayout l{};
  l.hh = lowp_panels(prec, lanes, lowp_hh_gates(cell), H, P, 0);
  l.ih = lowp_panels(prec, lanes, V, H, I, l.hh.size);
  const index_t at = l.ih.w + l.ih.size;
  l.p2 = cell == LowpCell::LstmProj ? lowp_panels(prec, lanes, 1, P, H, at)
         : cell == LowpCell::GruOrig ? lowp_panels(prec, lanes, 1, H, H, at)
                                     : LowpPanels{0, 0, 0, at, at, at, 0};
  l.bias = l.p2.w + l.p2.size;
  l.peep = round64(l.bias + l.ih.blocks * 2 * V * lanes * 4);
  l.size = round64(l.peep + (cell == LowpCell::Lstm ? l.ih.blocks * 3 * lanes * 4 : 0));
  return l;
}

// One low-precision step of one layer direction on rows [0, rows): x_t [rows][ldx] (I used), h_{t-1} [rows][ldh]
// (P wide), the LSTM's c [rows][ldc] in place (nullptr for the others), h_t written to hn [rows][ldhn] and, when y is
// not nullptr, to y [rows][ldy]. Each thread converts x_t and h_{t-1} (int8: quantizes them, with scales and zero
// points) into its own part of q / qscale / qzero (sized by lowp_q_bytes and 3·N) and computes its unit blocks. The
// two-phase cells pass m_t (LSTMP) or r ⊙ h_{t-1} (original GRU) through mid [N][H], and the original GRU keeps z and
// its n gate's input part in keep [N][2H], each thread for its own units.
struct LowpStep {
  const std::uint8_t* packed;  // 64-byte aligned, lowp_layout(prec, cell, lanes, I, H, P)
  const float* x;  index_t ldx;
  const float* hp; index_t ldh;
  float* hn;       index_t ldhn;
  float* y;        index_t ldy;
  float* c;        index_t ldc;
  float* mid;      float* keep;
  std::uint8_t* q; float* qscale; std::int32_t* qzero;
  index_t rows, N, I, H, P;  // N: the rows q was sized for
  int parts;
  LowpCell cell;
};
// Bytes of q per thread for N rows: x_t, h_{t-1} and the second product's input.
inline index_t lowp_q_bytes(Lowp prec, index_t N, index_t I, index_t H, index_t P) {
  return N * (lowp_kpad(prec, I) + lowp_kpad(prec, P) + lowp_kpad(prec, H)) * lowp_bytes(prec);
}

// One low-precision forward (lowp_forward) as each thread of its region sees it: the steps of `step` over the
// sequence, h alternating between two buffers hbuf [2][N][P] (rows past their end carried across).
struct LowpSequence {
  LowpStep step;
  float* hbuf;
  const float* x;  // [T][N][I]
  float* y;        // [T][N][ldy]
  const index_t* batch_sizes;
  index_t T;
  bool reverse;
};

// One streaming step of L layers (one-phase cells, P = H): layer l reads h_prev + l·N·H (and the previous layer's
// h_new, or x), and writes h_new + l·N·H and (LSTM) c + l·N·H; the threads meet once per layer.
struct LowpStream {
  LowpStep step;  // x, rows, N, H, q, parts, cell set; the rest per layer
  const std::uint8_t* const* packs;
  const float* h_prev; float* h_new; float* c;
  index_t L, I0;
};

}  // namespace detail

// One dot form of a level (int8.h): the packed-panel products and the loops built on them.
struct LowpPath {
  const char* name;
  // int8 only: acc [N][J] = aq Wqᵀ − zero · rowsum from Wq packed as lowp_panels(Int8, lanes, 1, J, K) at `packed`
  // (64-aligned).
  void (*accumulate)(std::int32_t* acc, const std::uint8_t* aq, index_t lda, const std::int32_t* zero,
                     const std::uint8_t* packed, index_t N, index_t J, index_t K);
  void (*sequence)(const detail::LowpSequence& F, int tid, int nt);
  void (*stream)(const detail::LowpStream& F, int tid, int nt);
};

// One ISA level's low-precision kernels (isa/int8.inc; the maths of reference.py's int8 and bfloat16 sections).
struct LowpKernels {
  void (*quantize_rows_u8)(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t lda, index_t N,
                           index_t K, index_t ldq);
  // Packs Wq [V·H][K] int8 (row scales; row sums computed here) into the panels p at base.
  void (*pack_int8)(std::uint8_t* base, const detail::LowpPanels& p, const std::int8_t* Wq, const float* scale,
                    index_t V, index_t H, index_t K);
  // Packs W [V·H][K] float32 as bfloat16 (rounded to nearest even) into the panels p at base.
  void (*pack_bf16)(std::uint8_t* base, const detail::LowpPanels& p, const float* W, index_t V, index_t H, index_t K);
  int lanes;
  LowpPath int8[2];  // the int8 dot forms this CPU runs at this level, best first; name nullptr past the last
  LowpPath bf16[1];  // the bfloat16 form, when this CPU and level have one (name nullptr otherwise)
};

struct KernelTable {
  const char* isa;  // the level's name, as PYLSTM_ISA spells it
  int lanes;        // float32 lanes of its vectors
  Kernels<float> f32;
  Kernels<double> f64;
  LowpKernels lowp;

  template <typename Real>
  const Kernels<Real>& of() const {
    if constexpr (std::is_same_v<Real, float>) return f32;
    else return f64;
  }
};

// The table in use. The first call chooses it: the best level the CPU runs, or the level the environment variable
// PYLSTM_ISA names; a name that is unknown or above what the CPU runs throws std::invalid_argument (and the next
// call tries again).
const KernelTable& kernels();

// The levels this CPU can run, best first.
std::vector<std::string> isa_available();

// The level PYLSTM_ISA=cap selects given the levels available (best first): the cap itself, which must be one of
// them (a cap above the CPU is an error, not a silent fallback). cap nullptr or blank means no cap: the best. Names
// are case-insensitive, surrounding blanks ignored. Throws std::invalid_argument for an unknown name or a level the
// CPU does not run. Pure, so that the messages can be tested with any pretend CPU.
std::string choose_isa(const char* cap, const std::vector<std::string>& available);

}  // namespace pylstm
