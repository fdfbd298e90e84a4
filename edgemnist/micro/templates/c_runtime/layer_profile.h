// The checking build's per-layer profile hook (the C-runtime Makefile force-includes this header
// into the generated model source and defines EM_TRACE(layer, data, bytes) to call it).
#ifndef EDGEMNIST_LAYER_PROFILE_H_
#define EDGEMNIST_LAYER_PROFILE_H_

#ifdef __cplusplus
extern "C" {
#endif

// Called by the generated code after layer `layer` of an inference wrote its output: the
// instructions since the previous layer ended (or the inference began) are that layer's.
void edgemnist_layer_done(int layer);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // EDGEMNIST_LAYER_PROFILE_H_
