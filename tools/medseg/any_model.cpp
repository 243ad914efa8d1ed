// The one instantiation of models::AnyModel<Cpu> the commands share (see any_model.hpp).
#include "any_model.hpp"

template class medseg::models::AnyModel<medseg::Cpu>;
