/* HDF5 1.10.8's own leak on a damaged object header, shown with HDF5's API alone (no code
 * of ours): fuzz_shard suppresses it (leak:H5O_protect) on this evidence. Not built by
 * CMake; by hand:
 *   clang -g -fsanitize=address test/fuzz/hdf5/h5leak.c -o /tmp/h5leak \
 *     -I/usr/include/hdf5/serial -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5
 *   ASAN_OPTIONS=fast_unwind_on_malloc=0:malloc_context_size=60 /tmp/h5leak \
 *     test/fuzz/corpus/shard/hdf5-leak-object-header.h5 / layer_00000
 * It opens the file, asks H5Oget_info_by_name2 about every link of each named group (two
 * of layer_00000's fail: their object headers are damaged), closes every handle and the
 * file (H5Fget_obj_count: only the file itself is open before its close), and exits:
 * LeakSanitizer reports "Direct leak of 424 byte(s) in 1 object(s)" allocated by
 * H5FL_reg_calloc under H5C_protect <- H5AC_protect <- H5O_protect <- H5O_get_info <-
 * H5Oget_info_by_name2: the object header that failed to load. (h5ls -r on the same file
 * ends with "HDF5: infinite loop closing library", the same lost object seen from
 * HDF5's side.) Free lists are off, as in fuzz_shard, so the stack is the allocation's. */
#include <hdf5.h>
#include <stdio.h>

static herr_t visit(hid_t group, const char* name, const H5L_info_t* link, void* data) {
  (void)link;
  (void)data;
  H5O_info_t info;
  printf("  %s: %d\n", name,
         (int)H5Oget_info_by_name2(group, name, &info, H5O_INFO_BASIC, H5P_DEFAULT));
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  H5dont_atexit();
  H5set_free_list_limits(0, 0, 0, 0, 0, 0);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  hid_t file = H5Fopen(argv[1], H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (file < 0) return 1;
  for (int i = 2; i < argc; ++i) {
    hid_t group = H5Gopen2(file, argv[i], H5P_DEFAULT);
    printf("%s: %s\n", argv[i], group < 0 ? "cannot open" : "open");
    if (group < 0) continue;
    hsize_t index = 0;
    H5Literate(group, H5_INDEX_NAME, H5_ITER_NATIVE, &index, visit, NULL);
    H5Gclose(group);
  }
  printf("objects open: %zd\n", H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
  printf("close: %d\n", (int)H5Fclose(file));
  return 0;
}
