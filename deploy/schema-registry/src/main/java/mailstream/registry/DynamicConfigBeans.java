package mailstream.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * The bean Apicurio's config-index extension would produce at build time (its deployment module is not on
 * Maven Central): the list of settings an admin may change at run time. Empty here: every setting is static.
 */
@ApplicationScoped
public class DynamicConfigBeans {

    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
