// models::AnyModel<Cpu> is instantiated once, in any_model.cpp: each command that builds a
// model would otherwise compile every model's forward and backward again (minutes per file).
#pragma once

#include "medseg/models/any_model.hpp"

extern template class medseg::models::AnyModel<medseg::Cpu>;
