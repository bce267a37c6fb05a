// Apache Iceberg's REST catalog server (org.apache.iceberg.rest.RESTCatalogServer) bound to one
// address instead of every interface: RESTCatalogServer's Jetty takes a port only, so a server
// started by it answers anyone who can reach the host. This launcher wires the same public pieces
// (the backend catalog built from the CATALOG_* environment, RESTCatalogAdapter, RESTCatalogServlet,
// gzip) to a Jetty connector on the address given as the first argument (127.0.0.1 by default).
//
// Run as a single source file, compiled in memory at start (no class file is built or committed):
//   java -cp 'jars/rest-catalog/*' LoopbackRestCatalogServer.java 127.0.0.1
// Environment: CATALOG_REST_PORT, and CATALOG_<PROPERTY> for the backend catalog, read as Iceberg's
// RCKUtils reads them (CATALOG_JDBC_USER is jdbc.user, CATALOG_IO__IMPL is io-impl).

import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.jdbc.JdbcCatalog;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public class LoopbackRestCatalogServer {
  private static final String PREFIX = "CATALOG_";

  /** CATALOG_JDBC_USER -> jdbc.user, CATALOG_IO__IMPL -> io-impl (as RCKUtils.environmentCatalogConfig). */
  static Map<String, String> environmentCatalogConfig() {
    Map<String, String> config = new HashMap<>();
    System.getenv().forEach((name, value) -> {
      if (name.startsWith(PREFIX)) {
        String key = name.substring(PREFIX.length()).replace("__", "-").replace("_", ".").toLowerCase(Locale.ROOT);
        config.put(key, value);
      }
    });
    return config;
  }

  public static void main(String[] args) throws Exception {
    String host = args.length > 0 ? args[0] : "127.0.0.1";
    Map<String, String> config = environmentCatalogConfig();
    int port = Integer.parseInt(config.getOrDefault("rest.port", "8181"));
    config.putIfAbsent("catalog-impl", JdbcCatalog.class.getName());
    config.putIfAbsent("jdbc.schema-version", "V1");
    if (!config.containsKey("uri") || !config.containsKey("warehouse")) {
      throw new IllegalArgumentException("CATALOG_URI and CATALOG_WAREHOUSE must be set");
    }
    String name = config.getOrDefault("catalog.name", "rest_backend");
    Catalog catalog = CatalogUtil.buildIcebergCatalog(name, config, new Configuration());

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    context.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);  // SIGTERM stops Jetty cleanly
    server.start();
    System.out.println("REST catalog server listening on " + host + ":" + port);
    server.join();
  }
}
