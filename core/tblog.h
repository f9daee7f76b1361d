/* TensorBoard event files (events.out.tfevents.*), written without TensorFlow.
 * File = TFRecords: [uint64 length][uint32 masked crc32c(length)][data][uint32 masked crc32c(data)],
 * masked crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8. Each record is an Event protobuf:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 * The first record carries file_version "brain.Event:2". */
#ifndef CONVNET_TBLOG_H
#define CONVNET_TBLOG_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct TbLog { FILE *f; char path[4200]; } TbLog;

int tblog_open(TbLog *t, const char *dir, char *err, size_t errlen);   /* creates dir/events.out.tfevents.<time>.convnet */
void tblog_scalar(TbLog *t, const char *tag, long step, float value);
void tblog_flush(TbLog *t);
void tblog_close(TbLog *t);

uint32_t tb_masked_crc(const void *data, size_t len);

#endif
