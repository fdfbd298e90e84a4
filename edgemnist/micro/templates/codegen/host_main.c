/* Host harness for generated C (tests and benchmarks): reads int8 inputs from stdin, one model input
 * after another, and writes each one's int8 scores to stdout. Built with -DEM_ARENA_GUARD=N it also
 * fills N guard bytes on each side of the arena and exits 3 if the model wrote any of them. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include EM_HEADER

#define EM_CAT2(a, b) a##b
#define EM_CAT(a, b) EM_CAT2(a, b)
#define EM_FN(suffix) EM_CAT(EM_NAME, suffix)

#ifdef EM_ARENA_GUARD
extern int8_t EM_FN(_arena_guarded)[];
#endif

int main(void)
{
    static int8_t image[EM_INPUT_BYTES];
    int8_t scores[EM_CLASSES];
#ifdef EM_ARENA_GUARD
    int i;
    int8_t *g = EM_FN(_arena_guarded);
    memset(g, 0x5A, EM_ARENA_GUARD);
    memset(g + EM_ARENA_GUARD + EM_ARENA_BYTES, 0x5A, EM_ARENA_GUARD);
#endif
    while (fread(image, 1, sizeof image, stdin) == sizeof image) {
        EM_FN(_predict)(image, scores);
        fwrite(scores, 1, sizeof scores, stdout);
#ifdef EM_ARENA_GUARD
        for (i = 0; i < EM_ARENA_GUARD; ++i) {
            if (g[i] != 0x5A || g[EM_ARENA_GUARD + EM_ARENA_BYTES + i] != 0x5A) {
                fprintf(stderr, "the model wrote outside its %d B arena\n", EM_ARENA_BYTES);
                return 3;
            }
        }
#endif
    }
    return 0;
}
