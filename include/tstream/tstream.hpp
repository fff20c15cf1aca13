// tstream: the umbrella header for users. Never included by tstream itself
// (each header includes exactly what it uses).
#pragma once

#include "tstream/version.hpp"

#include "tstream/arch/cache.hpp"
#include "tstream/arch/cpu.hpp"
#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/amx.hpp"

#include "tstream/core/bf16.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/config.hpp"
#include "tstream/core/math.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/core/vec.hpp"
#include "tstream/core/view.hpp"

#include "tstream/memory/sram.hpp"

#include "tstream/runtime/thread_team.hpp"

#include "tstream/kernels/attention/decode.hpp"
#include "tstream/kernels/attention/kv_cache.hpp"
#include "tstream/kernels/gemm/gemm.hpp"
#include "tstream/kernels/gemm/gemm_weights.hpp"
#include "tstream/kernels/gemv/gemv.hpp"
#include "tstream/kernels/gemv/quantize.hpp"
#include "tstream/kernels/gemv/resident_weights.hpp"

#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"
