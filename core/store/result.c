#include "config.h"
/* placeholder: being written */
typedef int aos_placeholder_t;
