// cpu: the fused CPU code's one translation unit: the step (cpu_step.cpp) and the evaluation
// forward (forward.cpp), by concept in two files, compiled together. Both run the loops of
// cpu_loops.h; compiled apart, GCC inlines those loops differently for the one caller each file
// then holds, contracts other multiply-adds into FMAs, and training's bits change (measured:
// quick.json's first epoch, training loss 0.29216874638310186 -> 0.29197641782407407). Together
// they train the bits every earlier release trained.
#include "fused/cpu_step.cpp"
#include "fused/forward.cpp"
