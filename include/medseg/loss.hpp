// Everything in loss/: Dice, cross-entropy (multi-class and binary), weighted sums of losses
// and nnU-Net's deep supervision, all satisfying the Loss concept of loss/concepts.hpp.
#pragma once

#include "loss/concepts.hpp"
#include "loss/cross_entropy.hpp"
#include "loss/deep_supervision.hpp"
#include "loss/dice.hpp"
#include "loss/mixed.hpp"
#include "loss/target.hpp"
