# picotflm_memmap(out): writes the SDK's default RP2040 memory map with two lists changed into the
# build folder and sets `out` to its path ("" when the SDK's map does not have the expected text; the
# SDK's own map is then used as it is). Nothing of the SDK is copied into this repository.
#
# The SDK's default map copies all of libgcc and libm into SRAM (fast on an XIP miss). Here that is
# about 15 KB of soft-float and 64-bit routines, run only while TFLM prepares the model and a few
# times per invoke: they stay in flash.
#
# It also copies every `.time_critical.*` function (the SDK's __not_in_flash_func and
# __time_critical_func) to SRAM. Of those, pico_sync's mutex functions stay in flash here: they never
# run while flash is unreadable (XIP is off only inside hardware_flash's flash_do_cmd, which takes no
# mutex and runs once, from a constructor before main, before core 1 or USB start), all their callers
# (stdio, malloc, tinyusb's FIFOs and endpoint claims) are in flash already, and no code left in SRAM
# calls them. Everything else stays in SRAM, time-critical code that a later SDK adds too, and in
# particular:
#   - hardware_flash (flash_do_cmd and its helpers; boot2_copyout is .bss): it runs with XIP off
#     (pico_unique_id's constructor -> flash_get_unique_id -> flash_do_cmd, for the USB serial number);
#   - tinyusb's RP2040 USB interrupt path (dcd_rp2040.c, rp2040_usb.c, usbd.c's dcd_event_handler,
#     ~3 KB): with the RP2040-E15 workaround on (the SDK's default PICO_RP2040_USB_DEVICE_UFRAME_FIX=1)
#     tinyusb forces this path into SRAM itself (rp2040_usb.h sets PICO_RP2040_USB_FAST_IRQ): the
#     workaround keeps bulk-IN buffers out of the last 200 us of each USB frame, timed from the SOF
#     interrupt, and flash fetch latency would shift that timing on a real board.
function(picotflm_memmap out)
    set(in ${PICO_SDK_PATH}/src/rp2_common/pico_crt0/rp2040/memmap_default.ld)
    set(${out} "" PARENT_SCOPE)
    if (NOT EXISTS ${in})
        return()
    endif ()
    file(READ ${in} map)
    # libgcc and libm: not copied to SRAM (the .text* line and the .rodata* line)
    set(edits "EXCLUDE_FILE(*libgcc.a: *libc.a:*lib_a-mem*.o *libm.a:)" "EXCLUDE_FILE(*libc.a:*lib_a-mem*.o)"
    # the mutex functions: in .text, which the script lists before .data and its *(.time_critical*)
              "*(.fini)" "*(.time_critical.mutex_*)\n        *(.fini)")
    while (edits)
        list(GET edits 0 from)
        list(GET edits 1 to)
        list(REMOVE_AT edits 0 1)
        string(FIND "${map}" "${from}" at)
        if (at EQUAL -1)
            message(WARNING "picotflm: ${in} has no '${from}': the SDK's memory map is used as it is")
            return()
        endif ()
        string(REPLACE "${from}" "${to}" map "${map}")
    endwhile ()
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/memmap_picotflm.ld "${map}")
    set(${out} ${CMAKE_CURRENT_BINARY_DIR}/memmap_picotflm.ld PARENT_SCOPE)
endfunction()
