// The freshness benchmark's feed: Trade messages at a fixed rate, event time = the wall clock at send.
//
// A JVM publisher costs a few percent of a core at 5,000 messages/s, where a kafka-python one took
// two thirds of a core of the two the pipeline under test runs on; in production the exchange
// feed does not share the pipeline's cores. Run by bench/bench_freshness.py with the Kafka jars the
// project already fetches (java's single-file source launcher, nothing to build):
//
//   java -cp 'jars/kafka/*' bench/feed/LiveTradeFeed.java BOOTSTRAP TOPIC RATE SYMBOLS SECONDS [ZIPF [LATE_EVERY LATE_MS]]
//
// Symbols take turns, or with ZIPF > 0 are drawn with Zipf-distributed activity (rank r in proportion
// to r^-ZIPF, a fixed seed), as a whole market trades. With LATE_EVERY and LATE_MS, every
// LATE_EVERY-th trade is stamped LATE_MS before the wall clock (a late trade, which the bars job
// MERGEs into a bar it has already written).
//
// Prints "ready" once connected, starts when a line arrives on stdin, and prints "sent N" at the end.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class LiveTradeFeed {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int rate = Integer.parseInt(args[2]);
        int symbols = Integer.parseInt(args[3]);
        double seconds = Double.parseDouble(args[4]);
        double zipf = args.length > 5 ? Double.parseDouble(args[5]) : 0.0;
        double[] cumulative = new double[symbols];
        double total = 0;
        for (int i = 0; i < symbols; i++) {
            total += zipf > 0 ? Math.pow(i + 1, -zipf) : 1.0;
            cumulative[i] = total;
        }
        java.util.Random draw = new java.util.Random(26);
        long lateEvery = args.length > 7 ? Long.parseLong(args[6]) : 0;
        long lateMs = args.length > 7 ? Long.parseLong(args[7]) : 0;

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        props.put("linger.ms", "5");
        props.put("batch.size", "262144");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        byte[][] keys = new byte[symbols][];
        String[] names = new String[symbols];
        for (int i = 0; i < symbols; i++) {
            names[i] = String.format("SYM%02d", i);
            keys[i] = names[i].getBytes(StandardCharsets.UTF_8);
        }
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.partitionsFor(topic);  // connected and the topic known before "ready"
            System.out.println("ready");
            System.out.flush();
            new BufferedReader(new InputStreamReader(System.in)).readLine();
            long started = System.nanoTime();
            long sent = 0;
            StringBuilder message = new StringBuilder(320);
            while ((System.nanoTime() - started) / 1e9 < seconds) {
                long due = (long) ((System.nanoTime() - started) / 1e9 * rate);
                while (sent < due) {
                    long nowMs = System.currentTimeMillis();
                    long eventMs = lateEvery > 0 && sent % lateEvery == lateEvery - 1 ? nowMs - lateMs : nowMs;
                    int index = (int) (sent % symbols);
                    if (zipf > 0) {
                        int found = java.util.Arrays.binarySearch(cumulative, draw.nextDouble() * total);
                        index = Math.min(symbols - 1, found >= 0 ? found : -found - 1);
                    }
                    message.setLength(0);
                    // Canonical, as the producers write it (model_dump_json: every field in order, a
                    // null one too, no whitespace), so the jobs take their fast path; Java's
                    // Double.toString writes these prices and volumes as Python's repr does.
                    message.append("{\"schema_version\":1,\"source\":\"finnhub\",\"symbol\":\"").append(names[index])
                        .append("\",\"price\":").append(100.0 + (sent % 400) / 4.0)
                        .append(",\"volume\":").append((double) (sent % 300 + 1))
                        .append(",\"event_time_ms\":").append(eventMs)
                        .append(",\"conditions\":[\"1\"],\"venue\":null,\"received_time_ms\":").append(nowMs)
                        .append(",\"trade_id\":\"live-").append(String.format("%012d", sent)).append("\"}");
                    producer.send(new ProducerRecord<>(topic, keys[index],
                        message.toString().getBytes(StandardCharsets.UTF_8)));
                    sent++;
                }
                Thread.sleep(20);
            }
            producer.flush();
            System.out.println("sent " + sent);
        }
    }
}
