// Everything in optim/: SGD, Adam and AdamW with torch.optim's update rules, gradient
// clipping by global norm, and per-iteration learning-rate schedules. State saves to and
// restores from safetensors checkpoints so that a resumed run continues exactly.
#pragma once

#include "optim/adam.hpp"
#include "optim/clip.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedules.hpp"
#include "optim/sgd.hpp"
