// The activation a loss applies to logits before comparing them with labels: a softmax over
// the channel axis, an element-wise sigmoid, or none. The enum is the loss kernels' own
// (ops::LossActivation, backends/loss.hpp); the kernels apply it and report non-finite input,
// which every loss must refuse (a NaN loss would otherwise propagate silently into the weights).
#pragma once

#include "../backends/loss.hpp"

namespace medseg::loss {

/// What turns logits into per-class scores: softmax (mutually exclusive classes), sigmoid
/// (independent channels), none (the network already outputs probabilities).
using Activation = ops::LossActivation;

}  // namespace medseg::loss
